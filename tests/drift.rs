//! Drift: what runs differs from what was applied. `plan` names it (exit 2) and
//! `apply` repairs it: a killed `restart = "no"` service is started, a flushed
//! nftables table is rebuilt, a deleted veth is made again. And `plan` shows the
//! host-side effects (routes, proxy neighbours, sysctls, rules) of a new container
//! before anything happens.
//!
//! Host tier (`require_host!`) but the plan-only test, which needs no root. Address
//! salt 131. The tests of this binary run one at a time: one of them flushes the
//! table every container of the binary's root shares.

mod support;
use std::process::{Output, Stdio};
use std::sync::Mutex;
use support::net::{http_get, try_get};
use support::*;

const SALT: u32 = 131;
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn port() -> u16 {
    23000 + slice(SALT) as u16
}

/// A web server on `n`'s addresses (`restart` policy given), plus a sleeper.
fn web(n: u32, net_extra: &str, restart: &str) -> String {
    format!(
        r#"base = "host"
[network]
ipv4 = "{}"
ipv6 = "{}"
{net_extra}

[[files]]
path = "/srv/www/index.html"
content = "hello from drift"

[processes.web]
command = ["/usr/bin/python3", "-m", "http.server", "8080", "--bind", "::", "--directory", "/srv/www"]
user = "nobody"
restart = "{restart}"
ready = {{ tcp = 8080 }}

[processes.idle]
command = ["/bin/sleep", "infinity"]
"#,
        v4(SALT, n),
        v6(SALT, n)
    )
}

fn plan(ct: &Ct) -> Output {
    container().arg("plan").arg(ct.spec()).stdin(Stdio::null()).output().expect("plan")
}

#[track_caller]
fn plan_code(ct: &Ct) -> (i32, String) {
    let out = plan(ct);
    (out.status.code().unwrap_or(-1), format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

/// The host pid of the child of host pid `pid1` whose pid in the container's pid
/// namespace is `ns_pid` (the supervisor's status gives namespace pids).
fn host_pid_of(pid1: i64, ns_pid: i64) -> i64 {
    let kids = std::fs::read_to_string(format!("/proc/{pid1}/task/{pid1}/children")).expect("children of PID 1");
    kids.split_whitespace()
        .filter_map(|k| k.parse::<i64>().ok())
        .find(|k| {
            let st = std::fs::read_to_string(format!("/proc/{k}/status")).unwrap_or_default();
            st.lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|v| v.split_whitespace().last().map(str::to_string))
                .is_some_and(|last| last == ns_pid.to_string())
        })
        .unwrap_or_else(|| panic!("no child of {pid1} is pid {ns_pid} in its namespace ({kids})"))
}

fn name(tag: &str) -> String {
    format!("d{}{tag}", slice(SALT))
}

#[test]
fn a_killed_service_is_drift_and_apply_starts_it() {
    require_host!();
    let _s = serial();
    let ct = Ct::new(&name("svc"), &web(1, "", "no"));
    ct.apply_ok();
    assert_eq!(plan_code(&ct).0, 0, "{}", plan_code(&ct).1);
    let idle = ct.service_pid("idle");
    let pid = ct.service_pid("web");
    // Only the service's own process, found as a child of the container's PID 1.
    let host_pid = host_pid_of(ct.pid1(), pid);
    host_ok(&["kill", "-KILL", &host_pid.to_string()]);
    eventually("web to be down", 10, || {
        let st = ct.status();
        let s = st["status"]["services"]["web"]["state"].as_str().unwrap_or("").to_string();
        matches!(s.as_str(), "exited" | "failed").then_some(())
    });
    let (code, out) = plan_code(&ct);
    assert_eq!(code, 2, "plan does not see the dead service:\n{out}");
    assert!(
        out.lines().any(|l| l.starts_with("~ service")
            && l.contains("web:")
            && l.contains("(recorded running)")
            && l.contains("→ start")),
        "{out}"
    );
    let applied = ct.apply_ok();
    assert!(applied.contains("started web"), "{applied}");
    assert!(http_get(&v4(SALT, 1), 8080).contains("hello from drift"));
    assert_ne!(ct.service_pid("web"), pid);
    assert_eq!(ct.service_pid("idle"), idle, "the other service was not touched");
    let (code, out) = plan_code(&ct);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_flushed_table_is_drift_and_apply_restores_the_rules() {
    require_host!();
    let _s = serial();
    let port = port();
    let ct = Ct::new(&name("nft"), &web(2, &format!("nat = true\npublish = [\"{port}:8080\"]"), "always"));
    ct.apply_ok();
    assert!(http_get("127.0.0.1", port).contains("hello from drift"));
    let table = container::runtime::layout::StateRoot::new(root()).nft_table();
    let owner = format!("\"container:{}\"", ct.key());
    let listed = || String::from_utf8_lossy(&host(&["nft", "list", "table", "inet", &table]).stdout).into_owned();
    assert!(listed().contains(&owner), "{}", listed());
    // Only this root's own table.
    host_ok(&["nft", "flush", "table", "inet", &table]);
    assert!(!listed().contains(&owner));
    assert!(try_get("127.0.0.1", port).is_err(), "the published port still answers without its rule");
    let (code, out) = plan_code(&ct);
    assert_eq!(code, 2, "plan does not see the flushed table:\n{out}");
    assert!(out.lines().any(|l| l.starts_with("+ nft") && l.contains("missing") && l.contains("→ restore")), "{out}");
    let applied = ct.apply_ok();
    assert!(applied.contains("nft rules restored"), "{applied}");
    assert!(listed().contains(&owner), "{}", listed());
    assert!(http_get("127.0.0.1", port).contains("hello from drift"));
    let (code, out) = plan_code(&ct);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_deleted_veth_is_drift_and_apply_makes_the_network_again() {
    require_host!();
    let _s = serial();
    let ct = Ct::new(&name("veth"), &web(3, "", "always"));
    ct.apply_ok();
    let pid1 = ct.pid1();
    assert!(http_get(&v4(SALT, 3), 8080).contains("hello from drift"));
    host_ok(&["ip", "link", "del", &ct.veth()]);
    let (code, out) = plan_code(&ct);
    assert_eq!(code, 2, "plan does not see the missing veth:\n{out}");
    let want = format!("+ veth      {} (missing)", ct.veth());
    assert!(out.lines().any(|l| l.starts_with(&want) && l.contains("→ recreate network")), "{out}");
    let applied = ct.apply_ok();
    assert!(applied.contains("recreated"), "{applied}");
    assert_eq!(ct.pid1(), pid1, "the network was repaired in place");
    let got = eventually("the container to answer again", 10, || try_get(&v4(SALT, 3), 8080).ok());
    assert!(got.contains("hello from drift"));
    let got = eventually("its IPv6 address to answer again", 10, || try_get(&v6(SALT, 3), 8080).ok());
    assert!(got.contains("hello from drift"));
    let (code, out) = plan_code(&ct);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn plan_of_a_new_routed_container_lists_its_host_routes_neighbours_and_rules() {
    let root = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("r.toml");
    let (a4, a6) = (v4(SALT, 9), v6(SALT, 9));
    std::fs::write(
        &spec,
        format!(
            "name = \"r\"\nbase = \"host\"\n[network]\nipv4 = \"{a4}\"\nipv6 = \"{a6}\"\nnat = true\n\
             proxy_arp = \"uplink0\"\npublish = [\"8080:80\"]\n[processes.a]\ncommand = [\"/bin/true\"]\n"
        ),
    )
    .unwrap();
    let out = isolated(root.path()).arg("plan").arg(&spec).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(2), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let has = |prefix: &str| text.lines().any(|l| l.starts_with(prefix));
    // As the plan writes it (canonical form).
    let a6 = a6.parse::<std::net::Ipv6Addr>().unwrap().to_string();
    assert!(has(&format!("+ route     {a4}/32 dev (veth)")), "{text}");
    assert!(has(&format!("+ route     {a6}/128 dev (veth)")), "{text}");
    assert!(has(&format!("+ neighbour proxy {a6} dev uplink0")), "{text}");
    assert!(has("+ sysctl    net.ipv4.conf.uplink0.proxy_arp = 1"), "{text}");
    assert!(has("+ sysctl    net.ipv4.ip_forward = 1"), "{text}");
    assert!(has(&format!("+ nft       masquerade {a4}")), "{text}");
    assert!(has(&format!("+ nft       dnat tcp/8080 on any host address → {a4}:80")), "{text}");
    assert!(has("+ nft       fence ipv4"), "{text}");
    // And in the machine format.
    let out = isolated(root.path()).args(["plan", "--json"]).arg(&spec).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = v["changes"].as_array().unwrap().iter().filter_map(|c| c["kind"].as_str()).collect();
    for k in ["route", "neighbour", "sysctl", "nft"] {
        assert!(kinds.contains(&k), "{kinds:?}");
    }
}
