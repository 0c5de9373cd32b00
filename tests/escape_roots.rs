//! State roots stay apart: two state roots (`--root`) on one host, each with a
//! container of the same name, as two users of the tool (or a test next to a real
//! install) have them. A command in one root must never stop, kill, unroute or take
//! over the other root's container, and two roots never hand out one address.
//!
//! Each test makes two temp roots of its own and `host`-base containers in them,
//! with fixed addresses in this binary's slice of block 75 (salt 53) or, for the
//! "auto" test, from the default pool 100.72.0.0/16 (the lowest free ones).
//! Traffic: none; the tests read the host's routes, links, cgroups and `/proc`.
//!
//! Host tier (`require_host!`).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use support::{host, text, v4, v6};

const SALT: u32 = 53;

/// A throwaway state root; every container applied in it is destroyed (with its
/// volumes) when dropped, then the root is removed.
struct Root {
    dir: tempfile::TempDir,
    names: std::cell::RefCell<Vec<String>>,
}

impl Root {
    fn new() -> Root {
        let dir = tempfile::Builder::new().prefix("ctroots").tempdir().expect("tempdir");
        Root { dir, names: Default::default() }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, args: &[&str]) -> Output {
        support::container_on(self.path()).args(args).stdin(Stdio::null()).output().expect("run container")
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "container {args:?} under {} failed ({}):\nstdout: {}\nstderr: {}",
            self.path().display(),
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Write the spec of `name` (a `host`-base sleeper with network `net`).
    fn spec(&self, name: &str, net: &str) -> PathBuf {
        let file = self.path().join(format!("{name}.toml"));
        let body = format!(
            "name = \"{name}\"\nbase = \"host\"\n[network]\n{net}\n\n[processes.main]\ncommand = [\"/bin/sleep\", \"infinity\"]\n"
        );
        std::fs::write(&file, body).expect("write spec");
        if !self.names.borrow().iter().any(|n| n == name) {
            self.names.borrow_mut().push(name.to_string());
        }
        file
    }

    fn apply(&self, name: &str, net: &str) -> Output {
        let spec = self.spec(name, net);
        self.run(&["apply", spec.to_str().unwrap()])
    }

    #[track_caller]
    fn apply_ok(&self, name: &str, net: &str) {
        let out = self.apply(name, net);
        assert!(
            out.status.success(),
            "apply {name} under {} failed ({}):\nstdout: {}\nstderr: {}",
            self.path().display(),
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    fn status(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", name, "--json"])).expect("status json")
    }

    /// The host pid of `name`'s running PID 1.
    #[track_caller]
    fn pid1(&self, name: &str) -> i64 {
        let st = self.status(name);
        st["pid"].as_i64().unwrap_or_else(|| panic!("{name} under {} is not running: {st}", self.path().display()))
    }

    /// The pool this root recorded (`pool.json`).
    fn pool(&self) -> String {
        std::fs::read_to_string(self.path().join("pool.json")).unwrap_or_default()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        for n in self.names.borrow().iter() {
            let _ = self.run(&["destroy", n, "--volumes"]);
        }
    }
}

/// A name of this test process (both roots use it).
fn name(tag: &str) -> String {
    format!("r{}{tag}", support::slice(SALT))
}

fn net(n: u32) -> String {
    format!("ipv4 = \"{}\"\nipv6 = \"{}\"", v4(SALT, n), v6(SALT, n))
}

/// What makes a running container on the host: its PID 1 (alive, same start time),
/// the cgroups PID 1 is in (each directory present), and the route to its IPv4
/// address with the interface it leads to (present).
#[derive(Debug, PartialEq, Eq)]
struct Footprint {
    pid1: i64,
    start_time: String,
    cgroups: Vec<PathBuf>,
    route: String,
    veth_present: bool,
}

fn start_time(pid: i64) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Field 22, after the parenthesised command.
    stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(19)).unwrap_or("").to_string()
}

fn cgroup_dirs(pid: i64) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let mut out = Vec::new();
    for h in container::exec::cgroup::discover().expect("mountinfo") {
        for l in text.lines() {
            let mut f = l.splitn(3, ':');
            let (_, ctrl, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
            let matches = match h.version {
                container::exec::cgroup::Version::V2 => ctrl.is_empty(),
                container::exec::cgroup::Version::V1 => {
                    let named = h.name.as_ref().map(|n| format!("name={n}"));
                    ctrl.split(',').any(|c| h.controllers.iter().any(|x| x == c) || Some(c.to_string()) == named)
                }
            };
            if matches && path.starts_with("/container/") {
                out.push(h.mount.join(path.trim_start_matches('/')));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The route to `addr` (one line), or "".
fn route_to(addr: &str) -> String {
    let out = host(&["ip", "-4", "-o", "route", "show", "table", "main", &format!("{addr}/32")]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn footprint(pid1: i64, addr: &str) -> Footprint {
    let route = route_to(addr);
    let dev = route.split_whitespace().skip_while(|w| *w != "dev").nth(1).unwrap_or("").to_string();
    let cgroups = cgroup_dirs(pid1);
    Footprint {
        pid1,
        start_time: start_time(pid1),
        veth_present: !dev.is_empty() && Path::new(&format!("/sys/class/net/{dev}")).exists(),
        cgroups: cgroups.into_iter().filter(|d| d.is_dir()).collect(),
        route,
    }
}

#[track_caller]
fn assert_intact(what: &str, before: &Footprint, pid1: i64, addr: &str) {
    let now = footprint(pid1, addr);
    assert_eq!(&now, before, "after {what} in the other root, this root's container changed");
    assert!(!before.cgroups.is_empty() && before.veth_present && !before.route.is_empty(), "{before:?}");
}

#[test]
fn stop_start_and_destroy_in_one_root_leave_the_same_named_container_of_another_running() {
    require_host!();
    let (a, b) = (Root::new(), Root::new());
    let n = name("same");
    a.apply_ok(&n, &net(1));
    b.apply_ok(&n, &net(2));
    let b_pid = b.pid1(&n);
    let b_addr = v4(SALT, 2);
    let before = footprint(b_pid, &b_addr);
    assert!(!before.cgroups.is_empty() && before.veth_present, "B's container is set up: {before:?}");
    // A's own container is still as A applied it (B did not take its veth or route).
    let a_pid = a.pid1(&n);
    let a_before = footprint(a_pid, &v4(SALT, 1));
    assert!(a_before.veth_present && !a_before.cgroups.is_empty(), "A's container survived B's apply: {a_before:?}");
    assert_ne!(a_before.cgroups, before.cgroups, "two roots' containers share cgroups");

    a.ok(&["stop", &n]);
    assert_intact("stop", &before, b_pid, &b_addr);
    assert_eq!(route_to(&v4(SALT, 1)), "", "A's own route went with its stop");

    a.ok(&["start", &n]);
    assert_intact("start", &before, b_pid, &b_addr);
    let a_pid = a.pid1(&n);
    let a_now = footprint(a_pid, &v4(SALT, 1));
    assert!(a_now.veth_present && !a_now.cgroups.is_empty(), "A's container runs again: {a_now:?}");

    a.ok(&["restart", &n]);
    assert_intact("restart", &before, b_pid, &b_addr);

    a.ok(&["destroy", &n, "--volumes"]);
    assert_intact("destroy", &before, b_pid, &b_addr);
    assert_eq!(b.pid1(&n), b_pid, "B still runs its PID 1");
    assert_eq!(route_to(&v4(SALT, 1)), "", "A's route is gone with A's container");
}

#[test]
fn two_roots_with_auto_addresses_get_different_ones() {
    require_host!();
    let (a, b) = (Root::new(), Root::new());
    let n = name("auto");
    a.apply_ok(&n, "ipv4 = \"auto\"\nipv6 = \"auto\"");
    b.apply_ok(&n, "ipv4 = \"auto\"\nipv6 = \"auto\"");
    let (sa, sb) = (a.status(&n), b.status(&n));
    let addr = |st: &serde_json::Value, k: &str| st["network"][k].as_str().map(str::to_string);
    let (pa, pb) = (a.pool(), b.pool());
    let v4_of = |pool: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(pool).expect("pool.json");
        v["ipv4"][&n].as_str().unwrap_or_default().to_string()
    };
    let v6_of = |pool: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(pool).expect("pool.json");
        v["ipv6"][&n].as_str().unwrap_or_default().to_string()
    };
    let (a4, b4) = (v4_of(&pa), v4_of(&pb));
    assert!(!a4.is_empty() && !b4.is_empty(), "{pa}\n{pb}");
    assert_ne!(a4, b4, "two roots handed out one IPv4 address ({sa} / {sb}, {:?})", addr(&sa, "ipv4"));
    assert_ne!(v6_of(&pa), v6_of(&pb), "two roots handed out one IPv6 address");
    // Both run, each routed to its own veth.
    let (ra, rb) = (route_to(&a4), route_to(&b4));
    let dev = |r: &str| r.split_whitespace().skip_while(|w| *w != "dev").nth(1).unwrap_or("").to_string();
    assert!(!dev(&ra).is_empty() && !dev(&rb).is_empty() && dev(&ra) != dev(&rb), "{ra}\n{rb}");
    a.pid1(&n);
    b.pid1(&n);
}

#[test]
fn an_address_another_roots_container_holds_is_refused_and_changes_nothing() {
    require_host!();
    let (a, b) = (Root::new(), Root::new());
    let n = name("fixed");
    let addr = v4(SALT, 3);
    a.apply_ok(&n, &net(3));
    let a_pid = a.pid1(&n);
    let a_before = footprint(a_pid, &addr);

    // The same name and address in root B: running in A, so B would take its route.
    let refused = |out: Output, what: &str| {
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{what} was accepted:\n{}\n{err}", text(&out.stdout));
        assert!(err.contains(&addr) && err.contains("state root"), "{what}: the error names the holder: {err}");
    };
    let spec = b.spec(&n, &net(3));
    refused(b.run(&["plan", spec.to_str().unwrap()]), "plan of a taken address");
    refused(b.apply(&n, &net(3)), "apply of a taken address");
    // A prefix over A's running address (B's own address is free): the host's route
    // to it is A's, not B's.
    let prefix = format!("{}/30", v4(SALT, 0));
    let out = b.apply(&n, &format!("ipv4 = \"{}\"\nprefixes = [\"{prefix}\"]", v4(SALT, 5)));
    assert!(!out.status.success(), "a prefix over another root's route was accepted: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&prefix), "{}", text(&out.stderr));
    assert_eq!(b.pool(), "", "B recorded nothing");
    assert!(!b.path().join("containers").join(&n).join("state.json").exists());
    assert_eq!(route_to(&v4(SALT, 5)), "", "B routed nothing");
    assert_intact("refused applies", &a_before, a_pid, &addr);

    // Stopped in A, its address is still A's: another name in B is refused too.
    a.ok(&["stop", &n]);
    let other = name("fixedb");
    let out = b.apply(&other, &net(3));
    let err = text(&out.stderr);
    assert!(!out.status.success(), "the address of A's stopped container was taken:\n{err}");
    assert!(err.contains(&addr) && err.contains("state root"), "{err}");
    assert!(!b.path().join("containers").join(&other).join("state.json").exists());
    assert_eq!(route_to(&addr), "", "nothing routes A's address while A is stopped");
    a.ok(&["start", &n]);
    assert!(route_to(&addr).contains("dev"), "A gets its address back");
}
