//! Escapes through `container exec`, tried for real from inside a container (host tier:
//! root, real namespaces, the real CLI on `base = "host"` containers).
//!
//! - TIOCSTI: the admin runs `container exec` from a terminal (here a pty pair of the
//!   test: its slave is the admin's terminal). Code inside must never hold an fd of
//!   that terminal: without `-t` its stdio are pipes of the tool, with `-t` a terminal
//!   of the container's own devpts. The probe tries TIOCSTI (after TIOCSCTTY, which an
//!   unprivileged session leader may do on a terminal without a session) on its fds
//!   0, 1, 2, on every other fd it has, on every `/proc/*/fd/*` it can open, and on
//!   `/dev/tty`; nothing may reach the admin's terminal.
//! - Catching the exec helper (the precondition of CVE-2019-5736): container root
//!   watches for new pids and opens `/proc/<pid>/exe` of every one it can while the
//!   test runs `container exec` again and again; it must never get hold of the host's
//!   `container` binary, nor of anything it can open for writing.
//!
//! Containers are named `esc-e-*`; they have no network (`mode = "none"`), so this
//! file uses no addresses (its address salt would be 48).

mod support;

use serde_json::Value;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::*;

/// Only a hang would take this long; never used to wait for something to happen.
const HANG: Duration = Duration::from_secs(120);

const SLEEPER: &str = r#"base = "host"
[network]
mode = "none"
[processes.main]
command = ["/bin/sleep", "infinity"]
"#;

/// The probe: prints one line `REPORT <json>` with what it found and what TIOCSTI did
/// on each fd. `unpriv` as argv[1]: try TIOCSCTTY first (all an unprivileged process
/// needs to make a session-less terminal its own, and then TIOCSTI on it works).
const TIOCSTI_PROBE: &str = r#"
import fcntl, glob, json, os, stat, sys, termios
unpriv = len(sys.argv) > 1 and sys.argv[1] == "unpriv"
res = []
def probe(fd, how):
    r = {"how": how, "uid": os.geteuid()}
    try:
        st = os.fstat(fd)
        r["dev"], r["rdev"], r["chr"] = st.st_dev, st.st_rdev, stat.S_ISCHR(st.st_mode)
    except OSError as e:
        r["fstat"] = e.errno
    try:
        r["link"] = os.readlink("/proc/self/fd/%d" % fd)
    except OSError:
        r["link"] = "?"
    if unpriv:
        try:
            fcntl.ioctl(fd, termios.TIOCSCTTY, 0)
        except OSError:
            pass
    try:
        for c in b"echo INJECTED\n":
            fcntl.ioctl(fd, termios.TIOCSTI, bytes([c]))
        r["sti"] = "ok"
    except OSError as e:
        r["sti"] = e.errno
    res.append(r)
for fd in (0, 1, 2):
    probe(fd, "fd%d" % fd)
for name in os.listdir("/proc/self/fd"):
    fd = int(name)
    if fd > 2:
        try:
            os.fstat(fd)
        except OSError:
            continue
        probe(fd, "own fd %d" % fd)
for path in glob.glob("/proc/[0-9]*/fd/*"):
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError:
        continue
    probe(fd, path)
    os.close(fd)
try:
    fd = os.open("/dev/tty", os.O_RDWR | os.O_NONBLOCK)
    probe(fd, "/dev/tty")
    os.close(fd)
except OSError:
    pass
sys.stdout.write("REPORT " + json.dumps(res) + "\n")
sys.stdout.flush()
"#;

/// (st_dev, st_rdev) of an fd: who a terminal is.
fn identity(fd: &OwnedFd) -> (u64, u64) {
    let m = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("stat the pty slave");
    (m.dev(), m.rdev())
}

/// Bytes waiting in the input queue of a terminal.
fn queued(fd: &OwnedFd) -> i32 {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    assert_eq!(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) }, 0, "FIONREAD");
    n
}

/// Everything read from `master` until `done(text)` holds, in a thread, with a deadline.
fn read_until(master: OwnedFd, done: impl Fn(&str) -> bool) -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut f = std::fs::File::from(master);
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = std::io::Read::read(&mut f, &mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + HANG;
    let mut text = String::new();
    while !done(&text) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Err(e) => panic!("reading the admin's terminal: {e}; got {text:?}"),
        }
    }
    text
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + HANG;
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            return st;
        }
        assert!(Instant::now() < deadline, "container exec hangs");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run the TIOCSTI probe through `container exec [extra] NAME -- argv…` with a fresh
/// pty's slave as the caller's stdin, stdout and stderr. Returns the probe's report,
/// the slave's identity and the bytes that ended up queued on the slave.
fn tiocsti_through_exec(name: &str, extra: &[&str], argv: &[&str]) -> (Vec<Value>, (u64, u64), i32) {
    let pty = nix::pty::openpty(None, None).expect("openpty");
    // Raw, without echo: any byte pushed into the admin's terminal stays queued on
    // its input, where FIONREAD counts it.
    let mut t = nix::sys::termios::tcgetattr(&pty.slave).expect("tcgetattr");
    nix::sys::termios::cfmakeraw(&mut t);
    nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &t).expect("tcsetattr");
    let who = identity(&pty.slave);
    let dup = || Stdio::from(pty.slave.try_clone().expect("dup slave"));
    let mut child = container()
        .arg("exec")
        .args(extra)
        .arg(name)
        .arg("--")
        .args(argv)
        .stdin(dup())
        .stdout(dup())
        .stderr(dup())
        .spawn()
        .expect("spawn container exec");
    let out = read_until(pty.master.try_clone().expect("dup master"), |t| {
        t.split_once("REPORT ").is_some_and(|(_, r)| r.contains('\n'))
    });
    let status = wait_exit(&mut child);
    let left = queued(&pty.slave);
    assert!(status.success(), "probe failed ({status}): {out}");
    let report = out.split_once("REPORT ").map(|(_, r)| r).and_then(|r| r.lines().next()).unwrap_or("");
    let report: Vec<Value> =
        serde_json::from_str(report.trim_end_matches('\r')).unwrap_or_else(|e| panic!("bad report ({e}): {out}"));
    (report, who, left)
}

fn is_admin_terminal(r: &Value, who: (u64, u64)) -> bool {
    r["chr"].as_bool() == Some(true) && (r["dev"].as_u64(), r["rdev"].as_u64()) == (Some(who.0), Some(who.1))
}

#[test]
fn tiocsti_through_exec_never_reaches_the_callers_terminal() {
    require_host!();
    let ct = Ct::new("esc-e-tiocsti", SLEEPER);
    ct.apply_ok();
    let probe = ["python3", "-c", TIOCSTI_PROBE];
    let unpriv =
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "python3", "-c", TIOCSTI_PROBE, "unpriv"];
    let runs: [(&str, &[&str], &[&str]); 3] =
        [("root, pipes", &[], &probe), ("nobody, pipes", &[], &unpriv), ("root, -t", &["-t"], &probe)];
    for (what, extra, argv) in runs {
        let (report, who, left) = tiocsti_through_exec(&ct.name, extra, argv);
        let want_uid = if what.starts_with("nobody") { 65534 } else { 0 };
        assert!(report.iter().all(|r| r["uid"] == want_uid), "{what}: probe ran as the wrong user: {report:?}");
        let admin: Vec<&Value> = report.iter().filter(|r| is_admin_terminal(r, who)).collect();
        assert!(admin.is_empty(), "{what}: code inside holds the caller's terminal: {admin:?}");
        assert_eq!(left, 0, "{what}: bytes were pushed into the caller's terminal: {report:?}");
        let std: Vec<&Value> = report.iter().take(3).collect();
        if extra.is_empty() {
            for r in &std {
                let link = r["link"].as_str().unwrap_or("");
                assert!(link.starts_with("pipe:["), "{what}: {} is not a pipe of the tool: {r}", r["how"]);
                assert_ne!(r["sti"], "ok", "{what}: TIOCSTI on {} worked: {r}", r["how"]);
            }
        } else {
            // With -t: the container's own terminal (another devpts instance).
            for r in &std {
                assert_eq!(r["chr"], true, "{what}: {} is not a terminal: {r}", r["how"]);
                assert_ne!(r["dev"].as_u64(), Some(who.0), "{what}: {} is on the host's devpts: {r}", r["how"]);
            }
        }
    }
}

/// Container root's catcher: watches the pids after its own (the container's pid
/// namespace hands them out in order) and opens `/proc/<pid>/exe` of each one it can
/// reach, `O_PATH` and `O_RDONLY`, until /tmp/esc-e-stop exists. Prints one JSON
/// line: every distinct file it got (dev, ino, link) and whether any could be
/// reopened for writing (opened `O_WRONLY` without truncating, closed at once).
const CATCHER: &str = r#"
import json, os, sys
me = os.getpid()
lo = me + 1
got = {}
writable = []
caught = 0
spins = 0
while True:
    spins += 1
    if spins % 512 == 0:
        if os.path.exists("/tmp/esc-e-stop"):
            break
    for pid in range(lo, lo + 24):
        p = "/proc/%d/exe" % pid
        for flags in (os.O_PATH, os.O_RDONLY):
            try:
                fd = os.open(p, flags | os.O_CLOEXEC)
            except FileNotFoundError:
                break
            except OSError:
                continue
            caught += 1
            try:
                st = os.fstat(fd)
                key = "%d:%d" % (st.st_dev, st.st_ino)
                if key not in got:
                    try:
                        link = os.readlink("/proc/self/fd/%d" % fd)
                    except OSError:
                        link = "?"
                    got[key] = link
                    try:
                        w = os.open("/proc/self/fd/%d" % fd, os.O_WRONLY | os.O_CLOEXEC)
                        os.close(w)
                        writable.append(link)
                    except OSError:
                        pass
            finally:
                os.close(fd)
            if pid > lo + 8:
                lo = pid - 8
print(json.dumps({"caught": caught, "got": got, "writable": writable, "me": me}))
"#;

/// Start container root's catcher in `ct`, run `execs`, stop the catcher; its report.
fn catch_while(ct: &Ct, execs: impl FnOnce()) -> Value {
    let catcher = container()
        .args(["exec", &ct.name, "--", "python3", "-c", CATCHER])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the catcher");
    // Make sure it is watching before the execs start.
    eventually("the catcher to run", 60, || {
        let out = ct.exec(&["sh", "-c", "for p in /proc/[0-9]*; do cat $p/cmdline; echo; done"]);
        String::from_utf8_lossy(&out.stdout).contains("esc-e-stop").then_some(())
    });
    execs();
    ct.exec_ok(&["touch", "/tmp/esc-e-stop"]);
    let out = catcher.wait_with_output().expect("catcher");
    assert!(out.status.success(), "catcher failed: {}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    eprintln!("the catcher's report: {report}");
    report
}

/// `st_dev:st_ino` of the host's `container` binary, as the catcher writes them.
fn host_binary_key() -> String {
    let m = std::fs::metadata(env!("CARGO_BIN_EXE_container")).expect("stat the container binary");
    format!("{}:{}", m.dev(), m.ino())
}

/// A PATH of 300 missing folders, then /usr/bin: a command that is not found keeps
/// searching it, and its whole life is the time before an execve.
fn long_path() -> String {
    (0..300).map(|i| format!("/esc-e-missing-{i}")).chain(["/usr/bin".to_string()]).collect::<Vec<_>>().join(":")
}

fn assert_not_caught(report: &Value) {
    let got = report["got"].as_object().expect("got");
    assert!(!got.contains_key(&host_binary_key()), "container root held the host's container binary: {report}");
    assert_eq!(report["writable"].as_array().map(Vec::len), Some(0), "a caught exe is writable: {report}");
}

#[test]
fn container_root_never_catches_the_host_binary_in_exec() {
    require_host!();
    let ct = Ct::new("esc-e-catch", SLEEPER);
    ct.apply_ok();
    let report = catch_while(&ct, || {
        for i in 0..100 {
            // `sleep` gives the catcher something it surely sees.
            let out = match i % 4 {
                1 => container()
                    .args(["exec", "--env", &format!("PATH={}", long_path()), &ct.name, "--", "esc-e-no-such-command"])
                    .stdin(Stdio::null())
                    .output()
                    .expect("exec"),
                2 => ct.exec(&["sleep", "0.05"]),
                _ => ct.exec(&["true"]),
            };
            let want = if i % 4 == 1 { 127 } else { 0 };
            assert_eq!(out.status.code(), Some(want), "exec {i}: {}", text(&out.stderr));
        }
    });
    let got = report["got"].as_object().expect("got");
    // The attack was real: it did get hold of processes that `exec` started.
    assert!(report["caught"].as_u64().unwrap_or(0) > 0 && !got.is_empty(), "the catcher caught nothing: {report}");
    assert!(got.values().any(|l| l.as_str().is_some_and(|l| l.ends_with("/sleep"))), "never saw sleep: {report}");
    assert_not_caught(&report);
}

/// The relay without `-t`: byte for byte (every byte value), both output streams
/// apart, the exit code, end of file on stdin, and no deadlock when the command
/// writes megabytes to stdout and stderr before it reads any of the megabytes the
/// caller is writing to its stdin.
#[test]
fn the_pipe_relay_is_binary_safe_and_never_deadlocks() {
    require_host!();
    let ct = Ct::new("esc-e-relay", SLEEPER);
    ct.apply_ok();
    let input: Vec<u8> = (0..3u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let script = "import sys\n\
        o, e = sys.stdout.buffer, sys.stderr.buffer\n\
        e.write(bytes(range(256)) * 16384); e.flush()\n\
        o.write(bytes(range(255, -1, -1)) * 16384); o.flush()\n\
        data = sys.stdin.buffer.read()\n\
        o.write(data[::-1]); o.flush()\n\
        sys.exit(3)\n";
    let mut child = container()
        .args(["exec", &ct.name, "--", "python3", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn container exec");
    let mut stdin = child.stdin.take().expect("stdin");
    let sent = input.clone();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &sent));
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer").expect("write stdin");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr[out.stderr.len().saturating_sub(2000)..]));
    let want_err: Vec<u8> = (0..=255u8).cycle().take(256 * 16384).collect();
    assert!(out.stderr == want_err, "stderr differs ({} bytes)", out.stderr.len());
    let mut want_out: Vec<u8> = (0..=255u8).rev().cycle().take(256 * 16384).collect();
    want_out.extend(input.iter().rev());
    assert_eq!(out.stdout.len(), want_out.len());
    assert!(out.stdout == want_out, "stdout differs");
}

/// Without `container-init` next to it, the CLI's helper re-executes a sealed memfd
/// copy of the CLI itself (`container __exec-helper …`): exec still works, and
/// container root never catches the host binary either.
#[test]
fn without_container_init_the_helper_is_a_sealed_copy() {
    require_host!();
    let ct = Ct::new("esc-e-selfexe", SLEEPER);
    ct.apply_ok();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let lone = dir.path().join("container");
    std::fs::hard_link(env!("CARGO_BIN_EXE_container"), &lone).expect("link the binary");
    let lone_exec = |argv: &[&str]| {
        std::process::Command::new(&lone)
            .arg("--root")
            .arg(root())
            .arg("--cache")
            .arg(cache())
            .arg("exec")
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .expect("run the lone binary")
    };
    let out = lone_exec(&[&ct.name, "--", "sh", "-c", "echo in-$(hostname); exit 4"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("in-{}\n", ct.name));
    let report = catch_while(&ct, || {
        for i in 0..8 {
            let out = lone_exec(&["--env", &format!("PATH={}", long_path()), &ct.name, "--", "esc-e-no-such-command"]);
            assert_eq!(out.status.code(), Some(127), "exec {i}: {}", text(&out.stderr));
        }
    });
    assert_not_caught(&report);
}

/// Field 7 of /proc/<pid>/stat: the controlling terminal's device number, 0 for none.
fn tty_nr(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = stat.rsplit_once(") ").map(|(_, r)| r).expect("stat format");
    after.split(' ').nth(4).and_then(|f| f.parse().ok()).expect("tty_nr")
}

/// Pids whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        let ppid = stat.rsplit_once(") ").and_then(|(_, r)| r.split(' ').nth(1)?.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

/// The admin's terminal is the caller's controlling terminal: the helper lets go of
/// it before it enters (otherwise the command, until its setsid, could open it as
/// /dev/tty), and a Ctrl-C typed there still reaches the command.
#[test]
fn the_helper_drops_the_callers_terminal_and_ctrl_c_still_arrives() {
    require_host!();
    let ct = Ct::new("esc-e-ctty", SLEEPER);
    ct.apply_ok();
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let dup = || Stdio::from(pty.slave.try_clone().expect("dup slave"));
    let script =
        "trap '' HUP; trap 'echo got-int > /tmp/esc-e-int; exit 0' INT; echo ready; while :; do sleep 0.1; done";
    // setsid --ctty: the CLI leads a session whose terminal is the pty, in the
    // foreground, as from an admin's shell.
    let mut cmd = std::process::Command::new("setsid");
    // An admin's shell runs a foreground command with SIGINT and SIGQUIT at their
    // defaults; a test harness started as a background job (`cmd &`) has them
    // ignored, and an ignored signal stays ignored across exec. Reset them, so the
    // test sees what an admin's ^C does wherever the suite was started from.
    // SAFETY: signal(2) is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGQUIT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut cli = cmd
        .arg("--ctty")
        .arg(env!("CARGO_BIN_EXE_container"))
        .arg("--root")
        .arg(root())
        .arg("--cache")
        .arg(cache())
        .args(["exec", &ct.name, "--", "sh", "-c", script])
        .stdin(dup())
        .stdout(dup())
        .stderr(dup())
        .spawn()
        .expect("spawn setsid container exec");
    read_until(pty.master.try_clone().expect("dup master"), |t| t.contains("ready"));
    let helpers = children(cli.id());
    assert_eq!(helpers.len(), 1, "the CLI's children: {helpers:?}");
    assert_ne!(tty_nr(cli.id()), 0, "the CLI has no controlling terminal: the test is wrong");
    assert_eq!(tty_nr(helpers[0]), 0, "the exec helper still has the caller's controlling terminal");
    // ^C on the terminal: SIGINT to its foreground process group (the CLI's).
    std::io::Write::write_all(&mut std::fs::File::from(pty.master.try_clone().expect("dup")), b"\x03")
        .expect("type ^C");
    let status = wait_exit(&mut cli);
    assert!(!status.success(), "the CLI ignored ^C: {status}");
    let got = eventually("the command's INT trap", 60, || {
        let out = ct.exec(&["cat", "/tmp/esc-e-int"]);
        out.status.success().then(|| text(&out.stdout))
    });
    assert_eq!(got, "got-int\n");
}
