//! Truthful status: a container whose PID 1 died without a `stop` shows as crashed,
//! with PID 1's signal (its keeper waited for it), and the next command that sees it
//! removes its rules; a stopped container's addresses are refused at once (an
//! `unreachable` route of the tool's) instead of leaving by the default route.
//!
//! Host tier (`require_host!`). Addresses: salt 101 of block 75 (`support::addr`).

mod support;
use serde_json::Value;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use support::*;

const SALT: u32 = 101;

fn name(tag: &str) -> String {
    format!("k{}{tag}", slice(SALT))
}

fn spec(n: u32, port: u16) -> String {
    format!(
        r#"base = "host"
[network]
ipv4 = "{}"
ipv6 = "{}"
nat = true
publish = ["{port}:8080"]

[processes.web]
command = ["/usr/bin/python3", "-m", "http.server", "8080", "--bind", "::"]
user = "nobody"
ready = {{ tcp = 8080 }}
"#,
        v4(SALT, n),
        v6(SALT, n)
    )
}

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&ok(args)).expect("json")
}

/// The container's rules in the nftables ruleset (tagged with its name).
fn nft_rules(name: &str) -> Vec<String> {
    let all = text(&host(&["nft", "list", "ruleset"]).stdout);
    all.lines().filter(|l| l.contains(&format!("\"container:{name}\""))).map(str::to_string).collect()
}

fn link_exists(dev: &str) -> bool {
    host(&["ip", "link", "show", "dev", dev]).status.success()
}

/// `ip route get ADDR` (stdout, or the error).
fn route_get(addr: &str) -> String {
    let out = host(&["ip", "route", "get", addr]);
    format!("{}{}", text(&out.stdout), text(&out.stderr)).trim().to_string()
}

/// Routes of the main table to exactly `addr`.
fn routes_to(addr: &str, len: u32) -> String {
    let fam = if addr.contains(':') { "-6" } else { "-4" };
    text(&host(&["ip", fam, "-o", "route", "show", "table", "all", &format!("{addr}/{len}")]).stdout).trim().to_string()
}

fn connect(addr: &str, port: u16) -> (std::io::Result<TcpStream>, Duration) {
    let sa: SocketAddr =
        if addr.contains(':') { format!("[{addr}]:{port}") } else { format!("{addr}:{port}") }.parse().unwrap();
    let t = Instant::now();
    let r = TcpStream::connect_timeout(&sa, Duration::from_secs(3));
    (r, t.elapsed())
}

#[test]
fn a_killed_pid1_shows_as_crashed_with_its_signal_and_its_rules_go() {
    require_host!();
    let n = name("kill");
    let ct = Ct::new(&n, &spec(1, 21000 + slice(SALT) as u16));
    ct.apply_ok();
    let pid = ct.pid1();
    assert!(!nft_rules(&ct.key()).is_empty(), "the container has rules while it runs");
    assert!(link_exists(&ct.veth()));

    // From the host, behind the tool's back.
    host_ok(&["kill", "-KILL", &pid.to_string()]);
    eventually("PID 1 gone", 10, || (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(()));

    let st = ct.status();
    assert_eq!(st["state"], "crashed", "{st:#}");
    assert_eq!(st["exit"]["signal"], "SIGKILL", "{st:#}");
    assert_eq!(st["exit"]["pid"].as_i64(), Some(pid), "{st:#}");
    // After that command its DNATs and veth are gone, and nothing is left that
    // belongs to the dead PID 1. Its fence and masquerade stay, as for any stopped
    // container (they match only its veth and its unreachable addresses), until
    // it is destroyed.
    let left = nft_rules(&ct.key());
    assert!(!left.is_empty() && left.iter().all(|r| !r.contains("dnat")), "rules of the crashed container: {left:?}");
    assert!(!link_exists(&ct.veth()), "veth of the crashed container left");
    assert!(!PathBuf::from(format!("/sys/fs/cgroup/container/{}", ct.key())).exists(), "cgroup left");

    let human = ok(&["status", &n]);
    let first = human.lines().next().unwrap_or("");
    assert!(first.contains("crashed (killed by SIGKILL)") && first.contains("s ago"), "{human}");
    // It stays crashed (no rerun of the cleanup makes it "stopped").
    let list = json(&["list", "--json"]);
    let row = list.as_array().unwrap().iter().find(|r| r["name"] == n.as_str()).cloned().expect("listed");
    assert_eq!(row["state"], "crashed", "{row:#}");
    assert_eq!(row["exit"]["signal"], "SIGKILL", "{row:#}");
    let listed = ok(&["list"]);
    let line = listed.lines().find(|l| l.starts_with(&format!("{n} "))).unwrap_or("");
    assert!(line.split_whitespace().nth(1) == Some("crashed"), "{listed}");
    assert!(listed.contains(&format!("{n}: crashed (killed by SIGKILL)")), "{listed}");

    // A stop by the user is no crash.
    ok(&["start", &n]);
    assert_eq!(ct.status()["state"], "running");
    ok(&["stop", &n]);
    let st = ct.status();
    assert_eq!(st["state"], "stopped", "{st:#}");
    assert!(st["exit"].is_null(), "{st:#}");
    // Destroyed, it leaves no rule.
    ok(&["destroy", &n]);
    assert_eq!(nft_rules(&ct.key()), Vec::<String>::new(), "rules of the destroyed container left");
}

#[test]
fn a_stopped_containers_address_is_refused_at_once_and_answers_after_start() {
    require_host!();
    let n = name("unr");
    let port = 21300 + slice(SALT) as u16;
    let (a4, a6) = (v4(SALT, 2), v6(SALT, 2));
    let ct = Ct::new(&n, &spec(2, port));
    ct.apply_ok();
    let (r, _) = connect(&a4, 8080);
    assert!(r.is_ok(), "the running container answers: {r:?}");

    ok(&["stop", &n]);
    for a in [&a4, &a6] {
        let (r, took) = connect(a, 8080);
        let e = r.expect_err("a stopped container's address answered");
        assert_eq!(e.raw_os_error(), Some(libc::EHOSTUNREACH), "{a}: {e}");
        assert!(took < Duration::from_millis(500), "{a}: refused only after {took:?}");
        // The kernel answers the lookup with the unreachable route's error, never
        // with the default route (nor "Network is unreachable", no route at all).
        let got = route_get(a);
        assert!(got.starts_with("unreachable") || got.contains("No route to host"), "{a}: ip route get says {got}");
        let len = if a.contains(':') { 128 } else { 32 };
        assert!(routes_to(a, len).starts_with("unreachable"), "{a}: {}", routes_to(a, len));
    }
    let started = Instant::now();
    let ping = host(&["ping", "-c1", "-W1", &a4]);
    let said = format!("{}{}", text(&ping.stdout), text(&ping.stderr));
    assert!(!ping.status.success(), "{said}");
    assert!(said.contains("unreachable") || said.contains("No route to host"), "{said}");
    assert!(started.elapsed() < Duration::from_millis(900), "ping waited {:?}", started.elapsed());
    assert!(routes_to(&a4, 32).contains("proto 201"), "{}", routes_to(&a4, 32));

    ok(&["start", &n]);
    let (r, _) = connect(&a4, 8080);
    assert!(r.is_ok(), "after start it answers again: {r:?}");
    let (r, _) = connect(&a6, 8080);
    assert!(r.is_ok(), "after start it answers again on IPv6: {r:?}");
    assert!(!routes_to(&a4, 32).contains("unreachable"), "{}", routes_to(&a4, 32));

    // Crashed: refused too; destroyed: nothing of it is left.
    host_ok(&["kill", "-KILL", &ct.pid1().to_string()]);
    eventually("crashed", 10, || (ct.status()["state"] == "crashed").then_some(()));
    assert!(route_get(&a4).contains("No route to host"), "{}", route_get(&a4));
    assert!(routes_to(&a4, 32).starts_with("unreachable"), "{}", routes_to(&a4, 32));
    ok(&["destroy", &n]);
    assert_eq!(routes_to(&a4, 32), "", "a route to a destroyed container's address is left");
    assert_eq!(routes_to(&a6, 128), "", "a route to a destroyed container's address is left");
}

#[test]
fn a_crash_is_drift_that_plan_names_and_apply_repairs() {
    require_host!();
    let n = name("drf");
    let ct = Ct::new(&n, &spec(3, 21600 + slice(SALT) as u16));
    ct.apply_ok();
    let plan = || container().arg("plan").arg(ct.spec()).stdin(std::process::Stdio::null()).output().expect("plan");
    assert_eq!(plan().status.code(), Some(0), "a running container has no drift");
    let pid = ct.pid1();
    host_ok(&["kill", "-KILL", &pid.to_string()]);
    eventually("PID 1 gone", 10, || (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(()));
    // `status` cleans it up (run.json goes): still, it is down and is to run.
    assert_eq!(ct.status()["state"], "crashed");
    assert!(!ct.dirs().join("run.json").exists(), "the crashed container was not cleaned up");
    let out = plan();
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "plan of a crashed container: {said}{}", text(&out.stderr));
    assert!(said.contains(&format!("~ container {n}: PID 1 crashed (killed by SIGKILL)")), "{said}");
    let json_out = container()
        .args(["plan", "--json"])
        .arg(ct.spec())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("plan --json");
    assert_eq!(json_out.status.code(), Some(2));
    assert!(text(&json_out.stdout).contains("crashed"), "{}", text(&json_out.stdout));

    ct.apply_ok();
    assert_eq!(ct.status()["state"], "running");
    let (r, _) = connect(&v4(SALT, 3), 8080);
    assert!(r.is_ok(), "after apply it answers again: {r:?}");
    let out = plan();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    // A user's stop is no drift, nor a crash of one disabled.
    ok(&["stop", &n]);
    assert_eq!(plan().status.code(), Some(0), "a stopped container is drift");
    ok(&["start", &n]);
    ok(&["disable", &n]);
    let pid = ct.pid1();
    host_ok(&["kill", "-KILL", &pid.to_string()]);
    eventually("crashed", 10, || (ct.status()["state"] == "crashed").then_some(()));
    assert_eq!(plan().status.code(), Some(0), "a crash of a container set to stay stopped is drift");
}

use std::path::PathBuf;
