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
    // A's own route went with its stop: only the tool's placeholder is left.
    let r = route_to(&v4(SALT, 1));
    assert!(r.starts_with("unreachable") && r.contains("proto 201"), "A's own route did not go with its stop: {r}");

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
    // Only the tool's placeholder: traffic to it is refused while A is stopped.
    let r = route_to(&addr);
    assert!(r.starts_with("unreachable") && r.contains("proto 201"), "A's address is routed while A is stopped: {r}");
    a.ok(&["start", &n]);
    assert!(route_to(&addr).contains("dev"), "A gets its address back");
}

// ---- The host-wide registry of addresses and routed prefixes (salt 89) ----
//
// Addresses `100.75.<slice>.<n>` of salt 89's slice; prefixes inside it.

const REG_SALT: u32 = 89;

fn reg4(n: u32) -> String {
    v4(REG_SALT, n)
}

/// `100.75.<slice>.<n>/<len>`.
fn reg_prefix(n: u32, len: u32) -> String {
    format!("{}/{len}", reg4(n))
}

/// The canonical path of a root, as the registry and its errors name it.
fn shown(root: &Root) -> String {
    std::fs::canonicalize(root.path()).expect("canonical root").display().to_string()
}

/// `out` was refused (exit 1) naming `holder` and, when it is another root, `root`;
/// `name` under `mine` recorded nothing and (when given) nothing routes `addr`.
#[track_caller]
fn refused_naming(out: &Output, what: &str, holder: &str, root: &Root, mine: &Root, name: &str, addr: Option<&str>) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what} was not refused:\n{}\n{err}", text(&out.stdout));
    let root_named = std::ptr::eq(root, mine) || err.contains(&shown(root));
    assert!(err.contains(holder) && root_named, "{what}: the error does not name {holder} and its root:\n{err}");
    let pool = mine.pool();
    assert!(!pool.contains(&format!("\"{name}\"")), "{what}: {name} was recorded in the pool: {pool}");
    assert!(!mine.path().join("containers").join(name).join("state.json").exists(), "{what}: {name} has a state");
    if let Some(addr) = addr {
        assert_eq!(route_to(addr), "", "{what}: something routes {addr}");
    }
}

#[test]
fn a_network_overlapping_a_stopped_container_of_another_root_is_refused() {
    require_host!();
    let (a, b) = (Root::new(), Root::new());
    // A's router: .1, routing .64/28; stopped, so only its placeholder shows.
    let router = name("rtr");
    a.apply_ok(&router, &format!("ipv4 = \"{}\"\nprefixes = [\"{}\"]", reg4(1), reg_prefix(64, 28)));
    a.ok(&["stop", &router]);
    let r = route_to(&reg4(1));
    assert!(
        r.starts_with("unreachable") && r.contains("proto 201"),
        "stopped: a route other than the placeholder: {r}"
    );
    let n = name("ovl");
    let cases = [
        // An address inside A's prefix.
        (format!("ipv4 = \"{}\"", reg4(70)), reg4(70)),
        // A prefix over A's address.
        (format!("ipv4 = \"{}\"\nprefixes = [\"{}\"]", reg4(20), reg_prefix(0, 30)), reg4(20)),
        // A prefix overlapping A's prefix (neither equal nor an address).
        (format!("ipv4 = \"{}\"\nprefixes = [\"{}\"]", reg4(21), reg_prefix(64, 27)), reg4(21)),
        // The same prefix.
        (format!("ipv4 = \"{}\"\nprefixes = [\"{}\"]", reg4(22), reg_prefix(64, 28)), reg4(22)),
    ];
    for (net, addr) in &cases {
        let out = b.apply(&n, net);
        refused_naming(&out, &format!("apply of {net:?}"), &router, &a, &b, &n, Some(addr));
    }
    // Within A, too (its own plans and the registry both say so).
    let sibling = name("sib");
    let out = a.apply(&sibling, &format!("ipv4 = \"{}\"", reg4(66)));
    refused_naming(&out, "an address in a sibling's prefix", &router, &a, &a, &sibling, Some(&reg4(66)));
    // Apart from it: accepted; and once A's router is destroyed, its prefix is free.
    b.apply_ok(&n, &format!("ipv4 = \"{}\"\nprefixes = [\"{}\"]", reg4(23), reg_prefix(96, 28)));
    a.ok(&["destroy", &router]);
    b.apply_ok(&name("ovl2"), &format!("ipv4 = \"{}\"", reg4(70)));
    assert!(route_to(&reg4(70)).contains("dev"), "routed once free");
}

/// One side of a race: a container of a root with its network and its address.
struct Side<'a> {
    root: &'a Root,
    name: String,
    net: String,
    addr: String,
}

/// Two `apply`s, one in each root, started together; their outputs.
fn racing(a: &Side, b: &Side) -> (Output, Output) {
    let start = |s: &Side| {
        let spec = s.root.spec(&s.name, &s.net);
        support::container_on(s.root.path())
            .arg("apply")
            .arg(spec)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start apply")
    };
    let (ca, cb) = (start(a), start(b));
    (ca.wait_with_output().expect("apply A"), cb.wait_with_output().expect("apply B"))
}

/// Exactly one of two racing applies won; the loser was refused naming the winner.
#[track_caller]
fn one_winner(what: &str, a: &Side, b: &Side) {
    let (oa, ob) = racing(a, b);
    let both = format!(
        "A ({}): {}\n{}\nB ({}): {}\n{}",
        oa.status,
        text(&oa.stdout),
        text(&oa.stderr),
        ob.status,
        text(&ob.stdout),
        text(&ob.stderr)
    );
    let (winner, loser, out) = match (oa.status.success(), ob.status.success()) {
        (true, false) => (a, b, ob),
        (false, true) => (b, a, oa),
        _ => panic!("{what}: not exactly one apply won:\n{both}"),
    };
    // The winner routes its own address; the loser's, when another, stays unrouted.
    let addr = Some(loser.addr.as_str()).filter(|a| *a != winner.addr);
    refused_naming(&out, what, &winner.name, winner.root, loser.root, &loser.name, addr);
    winner.root.pid1(&winner.name);
}

#[test]
fn two_applies_racing_in_two_roots_for_overlapping_networks_never_both_win() {
    require_host!();
    for round in 0..4u32 {
        let (ra, rb) = (Root::new(), Root::new());
        let side =
            |root, tag: &str, net: String, addr: String| Side { root, name: name(&format!("{tag}{round}")), net, addr };
        // One fixed address.
        let addr = reg4(100 + round);
        let net = format!("ipv4 = \"{addr}\"");
        let (a, b) = (side(&ra, "rca", net.clone(), addr.clone()), side(&rb, "rcb", net, addr));
        one_winner(&format!("round {round}: one address"), &a, &b);
        // A prefix, and an address inside it.
        let base = 128 + 16 * round;
        let (pa_addr, pb_addr) = (reg4(110 + round), reg4(base + 5));
        let anet = format!("ipv4 = \"{pa_addr}\"\nprefixes = [\"{}\"]", reg_prefix(base, 28));
        let bnet = format!("ipv4 = \"{pb_addr}\"");
        let (a, b) = (side(&ra, "rpa", anet, pa_addr), side(&rb, "rpb", bnet, pb_addr));
        one_winner(&format!("round {round}: a prefix and an address in it"), &a, &b);
        // "auto" on both sides: both win, with different addresses.
        let auto = "ipv4 = \"auto\"\nipv6 = \"auto\"".to_string();
        let (a, b) = (side(&ra, "rua", auto.clone(), String::new()), side(&rb, "rub", auto, String::new()));
        let (oa, ob) = racing(&a, &b);
        assert!(
            oa.status.success() && ob.status.success(),
            "round {round}: auto: {}\n{}",
            text(&oa.stderr),
            text(&ob.stderr)
        );
        let (sa, sb) = (ra.status(&a.name), rb.status(&b.name));
        for k in ["ipv4", "ipv6"] {
            let (x, y) = (sa[k].as_str(), sb[k].as_str());
            assert!(x.is_some() && x != y, "round {round}: two roots' auto {k}: {x:?} and {y:?}");
        }
    }
}

/// A host interface of this test (not the tool's: no `ct-` name) with routes on it,
/// removed (with its routes) when dropped: one end of a veth pair, as the `dummy`
/// driver is not on every test host.
struct Dummy(String);

impl Dummy {
    fn new(name: &str, routes: &[&str]) -> Dummy {
        let _ = host(&["ip", "link", "del", name]);
        support::host_ok(&["ip", "link", "add", name, "type", "veth", "peer", "name", &format!("{name}p")]);
        let d = Dummy(name.to_string());
        support::host_ok(&["ip", "link", "set", name, "up"]);
        for r in routes {
            support::host_ok(&["ip", "route", "add", r, "dev", name]);
        }
        d
    }
}

impl Drop for Dummy {
    fn drop(&mut self) {
        let _ = host(&["ip", "link", "del", &self.0]);
    }
}

#[test]
fn an_address_or_prefix_covering_a_host_route_is_refused_and_changes_nothing() {
    require_host!();
    let s = support::slice(REG_SALT);
    let canon = |a: String| a.parse::<std::net::IpAddr>().expect("address").to_string();
    let (r4, r6) = (reg4(200), canon(v6(REG_SALT, 200)));
    let dummy = Dummy::new(&format!("ctrdum{s}"), &[&format!("{r4}/32"), &format!("{r6}/128")]);
    let a = Root::new();
    let n = name("hrt");
    let cases = [
        format!("ipv4 = \"{r4}\""),
        format!("ipv4 = \"{}\"\nipv6 = \"{r6}\"", reg4(201)),
        format!("ipv4 = \"{}\"\nprefixes = [\"{}\"]", reg4(202), reg_prefix(192, 28)),
    ];
    for net in &cases {
        for cmd in ["plan", "apply"] {
            let spec = a.spec(&n, net);
            let out = a.run(&[cmd, spec.to_str().unwrap()]);
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{cmd} of {net:?} over a host route was accepted:\n{err}");
            assert!(err.contains("host route") && err.contains(&dummy.0), "{cmd} of {net:?}: {err}");
        }
        assert_eq!(a.pool(), "", "{net:?}: recorded");
        assert!(!a.path().join("containers").join(&n).join("state.json").exists());
    }
    // The host's routes are as they were.
    assert!(route_to(&r4).contains(&dummy.0), "{}", route_to(&r4));
    let out = host(&["ip", "-6", "-o", "route", "show", "table", "main", &format!("{r6}/128")]);
    assert!(text(&out.stdout).contains(&dummy.0), "{}", text(&out.stdout));
    // Next to it: fine.
    a.apply_ok(&n, &format!("ipv4 = \"{}\"", reg4(203)));
    drop(dummy);
    assert_eq!(route_to(&r4), "");
}
