//! A command that changes the host runs to its end whatever happens to its output:
//! stdout and stderr on a pipe nobody reads (`container restart x | head -c1`) or a
//! terminal that hangs up (SIGHUP) never leave a container stopped halfway.
//!
//! Host tier (`require_host!`): real containers on the `host` base, each with a web
//! server on its own address of this suite's slice (salt 127, see `support::addr`).

mod support;
use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use support::net::try_get;
use support::*;

const SALT: u32 = 127;
static COUNTER: AtomicU32 = AtomicU32::new(1);

/// A web server that answers with the content of a rendered file, and a process that
/// ignores SIGTERM, so a stop takes its whole timeout (a window for the hang-up).
fn spec(n: u32, page: &str) -> String {
    format!(
        r#"base = "host"
[network]
ipv4 = "{}"
ipv6 = "{}"

[[files]]
path = "/srv/www/index.html"
content = "{page}"

[processes.web]
command = ["/usr/bin/python3", "-m", "http.server", "8080", "--bind", "::", "--directory", "/srv/www"]
user = "nobody"
ready = {{ tcp = 8080 }}

[processes.stubborn]
command = ["/bin/sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"]
"#,
        addr::v4(SALT, n),
        addr::v6(SALT, n)
    )
}

struct Web {
    ct: Ct,
    n: u32,
}

impl Web {
    fn new(tag: &str) -> Web {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("p{}{tag}{n}", addr::slice(SALT));
        let ct = Ct::new(&name, &spec(n, "one"));
        ct.apply_ok();
        Web { ct, n }
    }
    fn answers(&self) -> String {
        try_get(&addr::v4(SALT, self.n), 8080).unwrap_or_else(|e| panic!("{} does not answer: {e}", self.ct.name))
    }
    fn state(&self) -> String {
        self.ct.status()["state"].as_str().unwrap_or("?").to_string()
    }
}

/// A pipe whose reading end is already closed: every write to the other end fails
/// with EPIPE (SIGPIPE is ignored by Rust programs).
fn dead_pipe() -> OwnedFd {
    let (r, w) = nix::unistd::pipe().expect("pipe");
    drop(r);
    w
}

/// `container ARGS` with stdout and stderr on a pipe nobody reads.
fn unread(args: &[&str]) -> Output {
    let w = dead_pipe();
    container()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(w.try_clone().unwrap()))
        .stderr(Stdio::from(w))
        .output()
        .expect("run container")
}

#[test]
fn restart_with_unread_output_restarts_and_leaves_it_running() {
    require_host!();
    let w = Web::new("r");
    let before = w.ct.pid1();
    let out = unread(&["restart", &w.ct.name, "--timeout", "1"]);
    assert!(out.status.success(), "restart with its output unread failed: {}", out.status);
    assert_eq!(w.state(), "running");
    assert_ne!(w.ct.pid1(), before, "not restarted");
    assert!(w.answers().contains("one"));
}

#[test]
fn apply_with_unread_output_applies_and_leaves_it_running() {
    require_host!();
    let w = Web::new("a");
    let before = w.ct.pid1();
    w.ct.write(&spec(w.n, "two"));
    let out = unread(&["apply", w.ct.spec().to_str().unwrap()]);
    assert!(out.status.success(), "apply with its output unread failed: {}", out.status);
    assert_eq!(w.state(), "running");
    assert!(w.answers().contains("two"), "the change was not applied");
    assert_eq!(w.ct.pid1(), before, "a file change recreated the container");
    let plan = container().arg("plan").arg(w.ct.spec()).output().unwrap();
    assert_eq!(plan.status.code(), Some(0), "apply left changes: {}", text(&plan.stdout));
}

#[test]
fn a_hang_up_during_restart_does_not_stop_it_halfway() {
    require_host!();
    let w = Web::new("h");
    let before = w.ct.pid1();
    // The terminal goes away while the stop waits for the stubborn process.
    let mut child = container()
        .args(["restart", &w.ct.name, "--timeout", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn restart");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while err.read_line(&mut line).expect("read stderr") > 0 && !line.contains("stopping") {
        line.clear();
    }
    assert!(line.contains("stopping"), "restart said no `stopping` line");
    std::thread::sleep(Duration::from_millis(200));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGHUP)
        .expect("SIGHUP");
    // The rest of stderr goes nowhere now, as with a closed terminal.
    drop(err);
    let status = child.wait().expect("wait");
    assert!(status.success(), "restart ended by SIGHUP: {status}");
    assert_eq!(w.state(), "running");
    assert_ne!(w.ct.pid1(), before, "not restarted");
    assert!(w.answers().contains("one"));
}
