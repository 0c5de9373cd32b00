//! `container apply` and the lifecycle commands, end to end, as root: real
//! namespaces, mounts, veths, nftables and processes, through the real binary.
//!
//! All tests share one state root (the nftables table is host-wide and rebuilt from
//! every container under the root, so separate roots would clobber each other's
//! rules). Each test uses its own container names and its own addresses in
//! 100.74.<slice>.0/24 and fd63:6f6e:7461:696e:74:<slice>::/96, where <slice> comes from
//! the test process id. Traffic only goes to those containers and to namespaces the
//! tests make themselves.
//!
//! Host tier (`require_host!`), but for the bad-input tests, which need no root.

mod support;
use serde_json::Value;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use support::net::{http_get, ping, try_get};
use support::*;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// This suite's slice of its own block, 100.74.0.0/16 (see `support::addr`).
fn slice() -> u32 {
    std::process::id() % 250 + 1
}

fn v4(n: u32) -> String {
    v4_in(74, slice(), n)
}

fn v6(n: u32) -> String {
    v6_in(74, slice(), n)
}

fn sh(cmd: &str) -> Output {
    Command::new("sh").args(["-c", cmd]).output().expect("sh")
}

/// A container of this suite: the harness' container named `t<slice><tag><n>`, on the
/// `host` base (its spec is `body` after `name` and `base`).
struct Ct(support::Ct);

impl Ct {
    fn new(tag: &str, body: &str) -> Ct {
        let name = format!("t{}{tag}{}", slice(), COUNTER.fetch_add(1, Ordering::Relaxed));
        Ct(support::Ct::new(&name, &format!("base = \"host\"\n{body}")))
    }
    fn write(&self, body: &str) {
        self.0.write(&format!("base = \"host\"\n{body}"));
    }
}

impl std::ops::Deref for Ct {
    type Target = support::Ct;
    fn deref(&self) -> &support::Ct {
        &self.0
    }
}

fn web_spec(n: u32, extra_net: &str) -> String {
    format!(
        r#"
[network]
ipv4 = "{}"
ipv6 = "{}"
{extra_net}

[[files]]
path = "/srv/www/index.html"
content = "hello from the test"

[processes.web]
command = ["/usr/bin/python3", "-m", "http.server", "8080", "--bind", "::", "--directory", "/srv/www"]
user = "nobody"
ready = {{ tcp = 8080 }}
"#,
        v4(n),
        v6(n)
    )
}

const SLEEPER: &str = r#"
[processes.main]
command = ["/bin/sleep", "infinity"]
"#;

/// [`footprint`] of a stopped container, whose addresses keep exactly one route each:
/// the tool's `unreachable` placeholder (proto 201), so traffic to them is refused,
/// and whose fence and masquerade rules stay (they match only its veth and those
/// addresses; so a start or stop runs no `nft`), but no DNAT. Returns everything
/// else it left.
#[track_caller]
fn stopped_footprint(name: &str, addrs: &[String]) -> Vec<String> {
    let all = footprint(name, addrs);
    let rule = |l: &str| l.contains(&format!("\"container:{}\"", host_key(name)));
    assert!(!all.iter().any(|l| rule(l) && l.contains("dnat")), "a DNAT of stopped {name} is left: {all:?}");
    let all: Vec<String> = all.into_iter().filter(|l| !rule(l)).collect();
    let placeholder = |l: &str| l.starts_with("unreachable ") && l.split_whitespace().any(|w| w == "201");
    for a in addrs {
        let a = a.parse::<std::net::IpAddr>().map_or(a.clone(), |p| p.to_string());
        let mine: Vec<&String> = all.iter().filter(|l| l.split_whitespace().nth(1) == Some(a.as_str())).collect();
        assert!(mine.len() == 1 && placeholder(mine[0]), "{a} of stopped {name}: {mine:?}");
    }
    all.into_iter().filter(|l| !placeholder(l)).collect()
}

/// What a container leaves on the host: its veth, routes to its addresses, its
/// nftables rules, mounts under its folder, its cgroups.
fn footprint(name: &str, addrs: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    // Derived from the root as well as the name (`StateRoot::host_key`).
    let key = host_key(name);
    let veth = container::exec::net::host_ifname(&key);
    // Whole outputs (`text` shortens), however many links and rules the host has.
    let all = |argv: &[&str]| String::from_utf8_lossy(&host(argv).stdout).into_owned();
    let links = all(&["ip", "-o", "link"]);
    out.extend(
        links
            .lines()
            .filter(|l| l.contains(&format!(" {veth}:")) || l.contains(&format!(" {veth}@")))
            .map(str::to_string),
    );
    // As `ip` prints them (RFC 5952: `…:74:5::28` is `…:74:5:0:28`).
    let addrs: Vec<String> =
        addrs.iter().map(|a| a.parse::<std::net::IpAddr>().map_or(a.clone(), |p| p.to_string())).collect();
    for fam in ["-4", "-6"] {
        let routes = all(&["ip", fam, "-o", "route", "show", "table", "all"]);
        out.extend(
            routes
                .lines()
                .filter(|l| {
                    addrs.iter().any(|a| l.split_whitespace().any(|w| w == a || w.starts_with(&format!("{a}/"))))
                })
                .map(str::to_string),
        );
    }
    let nft = all(&["nft", "list", "ruleset"]);
    // Rules carry the host key, as everything else of the container on the host.
    out.extend(nft.lines().filter(|l| l.contains(&format!("\"container:{key}\""))).map(str::to_string));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = root().join("containers").join(name);
    out.extend(mounts.lines().filter(|l| l.contains(dir.to_str().unwrap())).map(str::to_string));
    for h in ["memory", "pids", "cpu", "unified"] {
        let p = PathBuf::from(format!("/sys/fs/cgroup/{h}/container/{key}"));
        if p.exists() {
            out.push(p.display().to_string());
        }
    }
    let p = PathBuf::from(format!("/sys/fs/cgroup/container/{key}"));
    if p.exists() {
        out.push(p.display().to_string());
    }
    out
}

// ---- apply, reach, re-apply ------------------------------------------------------

#[test]
fn apply_serves_both_families_and_reapply_is_a_noop() {
    require_host!();
    let ct = Ct::new("web", &web_spec(1, ""));
    let out = ct.apply_ok();
    assert!(out.contains("created"), "{out}");
    assert!(out.contains(&format!("{}:8080", v4(1))), "apply does not say how to reach it: {out}");
    assert!(ping(&v4(1)), "host cannot ping the container over IPv4");
    assert!(ping(&v6(1)), "host cannot ping the container over IPv6");
    assert!(http_get(&v4(1), 8080).contains("hello from the test"));
    assert!(http_get(&v6(1), 8080).contains("hello from the test"));

    let pid1 = ct.pid1();
    let web = ct.service_pid("web");
    let again = ct.apply();
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(text(&again.stdout).contains("No changes"), "{}", text(&again.stdout));
    assert_eq!((ct.pid1(), ct.service_pid("web")), (pid1, web), "a no-op apply restarted something");
    let plan = container().args(["plan"]).arg(ct.spec()).output().unwrap();
    assert_eq!(plan.status.code(), Some(0), "plan after apply: {}", text(&plan.stdout));

    let list: Value = serde_json::from_str(&ok(&["list", "--json"])).unwrap();
    let row = list.as_array().unwrap().iter().find(|r| r["name"] == ct.name.as_str()).expect("listed");
    assert_eq!(row["state"], "running");
    assert_eq!(row["services_ready"], 1);
}

#[test]
fn dry_run_changes_nothing() {
    require_host!();
    let ct = Ct::new("dry", &web_spec(2, ""));
    let out = container().args(["apply", "--dry-run"]).arg(ct.spec()).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Plan: "), "{}", text(&out.stdout));
    assert!(!ct.dirs().join("state.json").exists());
    assert!(footprint(&ct.name, &[v4(2), v6(2)]).is_empty());
}

// ---- isolation -----------------------------------------------------------------

#[test]
fn pid_namespace_has_the_supervisor_as_pid_1_and_hides_the_host() {
    require_host!();
    let ct = Ct::new("pid", SLEEPER);
    ct.apply_ok();
    let cmdline = ct.exec_ok(&["cat", "/proc/1/cmdline"]);
    assert!(cmdline.contains("--config-fd"), "PID 1 is not our supervisor: {cmdline:?}");
    let pids: Vec<u32> = ct.exec_ok(&["ls", "/proc"]).split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert!(pids.len() <= 5, "more processes than the container's: {pids:?}");
    assert!(!pids.contains(&std::process::id()) || std::process::id() < 10, "host pid visible");
    assert!(pids.contains(&1));
}

#[test]
fn every_namespace_differs_from_the_host() {
    require_host!();
    let ct = Ct::new("ns", "hostname = \"isolated-host\"\n[network]\nmode = \"none\"\n[processes.main]\ncommand = [\"/bin/sleep\", \"infinity\"]\n");
    ct.apply_ok();
    for ns in ["mnt", "pid", "uts", "ipc", "net", "cgroup"] {
        let host = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        let inside = ct.exec_ok(&["readlink", &format!("/proc/self/ns/{ns}")]);
        assert_ne!(inside.trim(), host.to_str().unwrap(), "{ns} namespace is the host's");
    }
    assert_eq!(ct.exec_ok(&["hostname"]).trim(), "isolated-host");
    assert_eq!(ct.exec_ok(&["ls", "/sys/class/net"]).split_whitespace().collect::<Vec<_>>(), ["lo"]);
    // `none` still has a working loopback.
    let lo = ct.exec_ok(&["cat", "/sys/class/net/lo/operstate"]);
    assert!(lo.contains("unknown") || lo.contains("up"), "lo is down: {lo}");
}

#[test]
fn only_declared_host_paths_are_visible() {
    require_host!();
    let secret = tempfile::tempdir().unwrap();
    std::fs::write(secret.path().join("marker"), "host only").unwrap();
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(shared.path().join("given"), "declared").unwrap();
    let ct = Ct::new(
        "mnt",
        &format!(
            "[[mounts]]\ntarget = \"/srv/given\"\ntype = \"bind\"\nsource = \"{}\"\nread_only = true\n{SLEEPER}",
            shared.path().display()
        ),
    );
    ct.apply_ok();
    let marker = secret.path().join("marker");
    let out = ct.exec(&["test", "-e", marker.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "a host path is visible inside");
    assert_eq!(ct.exec_ok(&["cat", "/srv/given/given"]), "declared");
    // The host's root folders other than /usr and /etc are not there.
    let out = ct.exec(&["test", "-e", root().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "the state root is visible inside");
}

#[test]
fn root_is_read_only_and_volumes_and_tmpfs_are_writable() {
    require_host!();
    let ct = Ct::new(
        "ro",
        &format!(
            "[[mounts]]\ntarget = \"/srv/data\"\ntype = \"volume\"\n[[mounts]]\ntarget = \"/scratch\"\ntype = \"tmpfs\"\nsize = \"4M\"\n{SLEEPER}"
        ),
    );
    ct.apply_ok();
    for path in ["/newfile", "/usr/newfile", "/etc/newfile"] {
        let out = ct.exec(&["touch", path]);
        assert!(!out.status.success(), "{path} is writable");
        assert!(text(&out.stderr).contains("Read-only file system"), "{path}: {}", text(&out.stderr));
    }
    ct.exec_ok(&["sh", "-c", "echo kept > /srv/data/f"]);
    assert_eq!(std::fs::read_to_string(ct.volume("srv-data").join("f")).unwrap(), "kept\n");
    ct.exec_ok(&["touch", "/scratch/x", "/tmp/x"]);
    // A rendered file is read-only inside.
    let out = ct.exec(&["sh", "-c", "echo x >> /etc/hosts"]);
    assert!(!out.status.success(), "/etc/hosts is writable");
}

#[test]
fn a_volume_and_a_tmpfs_owned_by_a_service_user_are_its_to_write() {
    require_host!();
    let body = "[[mounts]]\ntarget = \"/srv/data\"\nowner = \"nobody\"\nmode = \"0700\"\n\
         [[mounts]]\ntarget = \"/scratch\"\ntype = \"tmpfs\"\nowner = \"nobody:nogroup\"\nmode = \"0750\"\n\
         [processes.main]\nuser = \"nobody\"\n\
         command = [\"/bin/sh\", \"-c\", \"echo mine > /srv/data/f && touch /scratch/x && exec sleep infinity\"]\n";
    let ct = Ct::new("vown", body);
    ct.apply_ok();
    let f = eventually("the service's file", 10, || std::fs::read_to_string(ct.volume("srv-data").join("f")).ok());
    assert_eq!(f, "mine\n");
    let seen = ct.exec_ok(&["stat", "-c", "%U:%G %a", "/srv/data", "/scratch"]);
    assert_eq!(seen.lines().collect::<Vec<_>>(), ["nobody:nogroup 700", "nobody:nogroup 750"], "{seen}");
    // The data of an existing volume is the container's: a changed owner applies to
    // a new volume only, and the file stays.
    ct.write(&body.replace("owner = \"nobody\"\nmode = \"0700\"", "owner = \"root\""));
    ct.apply_ok();
    assert_eq!(ct.exec_ok(&["stat", "-c", "%U %a", "/srv/data"]).trim(), "nobody 700");
}

#[test]
fn dev_is_minimal_and_proc_sys_are_protected() {
    require_host!();
    let ct = Ct::new("dev", SLEEPER);
    ct.apply_ok();
    let mut dev: Vec<String> = ct.exec_ok(&["ls", "-A", "/dev"]).split_whitespace().map(str::to_string).collect();
    dev.sort();
    assert_eq!(
        dev,
        ["fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"]
    );
    // runc's masked paths read as empty inside (those this kernel has).
    for path in ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug"] {
        if Path::new(path).exists() {
            let size = ct.exec_ok(&["sh", "-c", &format!("cat {path} | wc -c")]);
            assert_eq!(size.trim(), "0", "{path} is not masked");
        }
    }
    for path in ["/proc/sys/kernel/hostname", "/proc/sysrq-trigger", "/sys/kernel/uevent_helper"] {
        let out = ct.exec(&["sh", "-c", &format!("echo x > {path}")]);
        assert!(!out.status.success(), "{path} is writable");
    }
    let out = ct.exec(&["touch", "/sys/x"]);
    assert!(!out.status.success(), "/sys is writable");
}

#[test]
fn no_host_fd_reaches_the_container() {
    require_host!();
    let ct = Ct::new(
        "fd",
        "[[mounts]]\ntarget = \"/srv/out\"\ntype = \"volume\"\n[processes.main]\ncommand = [\"/bin/sh\", \"-c\", \"ls /proc/self/fd > /srv/out/fds; ls -l /proc/1/fd > /srv/out/pid1; exec sleep infinity\"]\n",
    );
    // The CLI gets an inheritable fd 7 from its parent: it must not reach PID 1 or a service.
    let cmd = format!(
        "exec 7</etc/hostname; exec '{}' --root '{}' apply '{}'",
        env!("CARGO_BIN_EXE_container"),
        root().display(),
        ct.spec().display()
    );
    let out = sh(&cmd);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let fds = eventually("the service's fd list", 30, || {
        std::fs::read_to_string(ct.volume("srv-out").join("pid1")).ok().filter(|s| !s.is_empty())?;
        std::fs::read_to_string(ct.volume("srv-out").join("fds")).ok()
    });
    // ls itself holds fd 3 (the directory it lists).
    assert_eq!(fds.split_whitespace().collect::<Vec<_>>(), ["0", "1", "2", "3"]);
    let pid1 = std::fs::read_to_string(ct.volume("srv-out").join("pid1")).unwrap();
    assert!(!pid1.contains("/etc/hostname"), "a host fd reached PID 1:\n{pid1}");
    // Its readiness pipe (fd 5 at its start) is closed once it told the CLI (seen
    // from the host: inside, PID 1's fd links are unreadable).
    let held: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", ct.pid1()))
        .expect("PID 1's fds")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|l| l.display().to_string())
        .collect();
    // Its own self-pipe it holds both ends of; a pipe with one end only leads out.
    let lone = held.iter().filter(|l| l.starts_with("pipe:") && held.iter().filter(|m| m == l).count() == 1);
    assert_eq!(lone.count(), 0, "PID 1 still holds one end of a pipe: {held:?}");
}

#[test]
fn pid_1_is_not_a_writable_host_binary() {
    require_host!();
    let ct = Ct::new("exe", SLEEPER);
    ct.apply_ok();
    let out = ct.exec(&["sh", "-c", "echo pwned >> /proc/1/exe"]);
    assert!(!out.status.success(), "PID 1's binary is writable from inside");
    let exe = std::fs::read_link(format!("/proc/{}/exe", ct.pid1())).unwrap();
    let bin = std::fs::read(env!("CARGO_BIN_EXE_container")).unwrap();
    assert!(!bin.ends_with(b"pwned\n"), "the host binary was changed ({})", exe.display());
}

// ---- volumes, re-apply, config changes ------------------------------------------------

#[test]
fn a_volume_keeps_its_data_across_stop_start_reapply_and_destroy() {
    require_host!();
    let body = format!("[[mounts]]\ntarget = \"/srv/data\"\ntype = \"volume\"\n{SLEEPER}");
    let ct = Ct::new("vol", &body);
    ct.apply_ok();
    ct.exec_ok(&["sh", "-c", "echo precious > /srv/data/row"]);
    ok(&["stop", &ct.name]);
    assert_eq!(ct.status()["state"], "stopped");
    ok(&["start", &ct.name]);
    assert_eq!(ct.exec_ok(&["cat", "/srv/data/row"]), "precious\n", "lost on stop/start");
    ok(&["restart", &ct.name]);
    assert_eq!(ct.exec_ok(&["cat", "/srv/data/row"]), "precious\n", "lost on restart");
    // A change that recreates the container.
    ct.write(&format!("hostname = \"changed\"\n{body}"));
    let out = ct.apply_ok();
    assert!(out.contains("recreated"), "{out}");
    assert_eq!(ct.exec_ok(&["cat", "/srv/data/row"]), "precious\n", "lost on re-apply");
    ok(&["destroy", &ct.name]);
    assert!(footprint(&ct.name, &[]).is_empty());
    ct.apply_ok();
    assert_eq!(ct.exec_ok(&["cat", "/srv/data/row"]), "precious\n", "lost on destroy without --volumes");
    ok(&["destroy", &ct.name, "--volumes"]);
    assert!(!ct.volume("srv-data").exists(), "destroy --volumes kept the volume");
}

fn conf_spec(a: &str, b: &str) -> String {
    format!(
        r#"
[[files]]
path = "/srv/conf/a.conf"
content = "{a}"
[[files]]
path = "/srv/conf/b.conf"
content = "{b}"
[[mounts]]
target = "/srv/state"
type = "volume"

[processes.a]
command = ["/bin/sh", "-c", "trap 'cat /srv/conf/a.conf >> /srv/state/a.reloads' HUP; while :; do sleep 0.2; done"]
reload_signal = "HUP"
uses = ["/srv/conf/a.conf"]

[processes.b]
command = ["/bin/sleep", "infinity"]
uses = ["/srv/conf/b.conf"]

[processes.c]
command = ["/bin/sleep", "infinity"]
"#
    )
}

#[test]
fn a_config_change_reloads_or_restarts_only_its_service() {
    require_host!();
    let ct = Ct::new("cfg", &conf_spec("a1", "b1"));
    ct.apply_ok();
    let pids = || (ct.pid1(), ct.service_pid("a"), ct.service_pid("b"), ct.service_pid("c"));
    let (p1, a, b, c) = pids();

    // a.conf changed: a is reloaded (same pid, got SIGHUP, sees the new file).
    ct.write(&conf_spec("a2", "b1"));
    let plan = container().args(["plan"]).arg(ct.spec()).output().unwrap();
    assert_eq!(plan.status.code(), Some(2));
    assert!(text(&plan.stdout).contains("reload a"), "{}", text(&plan.stdout));
    let out = ct.apply_ok();
    assert!(out.contains("reloaded a"), "{out}");
    assert_eq!(pids(), (p1, a, b, c), "a reload changed a pid");
    let reloads = eventually("a's reload", 30, || {
        std::fs::read_to_string(ct.volume("srv-state").join("a.reloads")).ok().filter(|s| s.contains("a2"))
    });
    assert_eq!(reloads, "a2");
    assert_eq!(ct.exec_ok(&["cat", "/srv/conf/a.conf"]), "a2");

    // b.conf changed: b restarts (new pid), nothing else does.
    ct.write(&conf_spec("a2", "b2"));
    let out = ct.apply_ok();
    assert!(out.contains("restarted b"), "{out}");
    let (p1x, ax, bx, cx) = pids();
    assert_eq!((p1x, ax, cx), (p1, a, c), "an unrelated service was restarted");
    assert_ne!(bx, b, "b was not restarted");
    assert_eq!(ct.exec_ok(&["cat", "/srv/conf/b.conf"]), "b2");
}

#[test]
fn a_changed_process_restarts_alone_and_a_new_one_starts() {
    require_host!();
    let base = "[processes.keep]\ncommand = [\"/bin/sleep\", \"infinity\"]\n";
    let ct = Ct::new("svc", &format!("{base}[processes.change]\ncommand = [\"/bin/sleep\", \"1000\"]\n"));
    ct.apply_ok();
    let (p1, keep, change) = (ct.pid1(), ct.service_pid("keep"), ct.service_pid("change"));
    ct.write(&format!(
        "{base}[processes.change]\ncommand = [\"/bin/sleep\", \"2000\"]\n[processes.new]\ncommand = [\"/bin/sleep\", \"infinity\"]\n"
    ));
    ct.apply_ok();
    assert_eq!((ct.pid1(), ct.service_pid("keep")), (p1, keep), "container or unchanged service restarted");
    assert_ne!(ct.service_pid("change"), change);
    assert!(ct.service_pid("new") > 0);
}

#[test]
fn a_changed_address_reconfigures_the_network_live() {
    require_host!();
    let ct = Ct::new("net", &format!("[network]\nipv4 = \"{}\"\n{SLEEPER}", v4(20)));
    ct.apply_ok();
    assert!(ping(&v4(20)));
    let p1 = ct.pid1();
    ct.write(&format!("[network]\nipv4 = \"{}\"\nipv6 = \"{}\"\n{SLEEPER}", v4(21), v6(21)));
    let out = ct.apply_ok();
    assert!(out.contains("network reconfigured"), "{out}");
    assert_eq!(ct.pid1(), p1, "a network change recreated the container");
    assert!(ping(&v4(21)) && ping(&v6(21)));
    assert!(footprint(&ct.name, &[v4(20)]).iter().all(|l| !l.contains(&v4(20))), "old route left");
}

// ---- network ---------------------------------------------------------------------

#[test]
fn a_published_port_reaches_the_server_in_the_container() {
    require_host!();
    let port = 20000 + slice() as u16;
    let ct = Ct::new("pub", &web_spec(3, &format!("publish = [\"{port}:8080\"]")));
    ct.apply_ok();
    assert!(http_get("127.0.0.1", port).contains("hello from the test"), "127.0.0.1:{port} does not reach it");
}

/// A namespace made by the test ("outside"), joined to the host by a veth; removed on drop.
struct Outside {
    ns: String,
    link: String,
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = sh(&format!("ip link del {}; ip netns del {}", self.link, self.ns));
    }
}

#[test]
fn nat_masquerades_traffic_to_an_outside_namespace() {
    require_host!();
    let s = slice();
    let o = Outside { ns: format!("cto{s}"), link: format!("cto{s}h") };
    let (host4, far4) = (format!("100.74.{s}.201"), format!("100.74.{s}.202"));
    let setup = format!(
        "set -e; ip netns add {ns}; ip link add {l} type veth peer name eth0 netns {ns}; \
         ip addr add {host4}/30 dev {l}; ip link set {l} up; \
         ip netns exec {ns} ip addr add {far4}/30 dev eth0; ip netns exec {ns} ip link set eth0 up; \
         ip netns exec {ns} ip link set lo up",
        ns = o.ns,
        l = o.link
    );
    let out = sh(&setup);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The outside server answers with the address it sees.
    let server = "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',9000))\ns.listen()\nwhile True:\n c,a=s.accept(); c.sendall(a[0].encode()); c.close()";
    let mut srv: Child = Command::new("ip")
        .args(["netns", "exec", &o.ns, "python3", "-c", server])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ct = Ct::new("nat", &format!("[network]\nipv4 = \"{}\"\nnat = true\n{SLEEPER}", v4(4)));
    ct.apply_ok();
    let client = format!(
        "import socket,time\nfor i in range(100):\n try:\n  c=socket.create_connection(('{far4}',9000),timeout=2); print(c.recv(100).decode()); break\n except OSError: time.sleep(0.1)"
    );
    let seen = ct.exec_ok(&["python3", "-c", &client]);
    let _ = srv.kill();
    let _ = srv.wait();
    assert_eq!(seen.trim(), host4, "the outside saw the container's own address: not masqueraded");
}

#[test]
fn host_network_mode_shares_the_hosts_interfaces() {
    require_host!();
    let ct = Ct::new("hnet", &format!("[network]\nmode = \"host\"\n{SLEEPER}"));
    ct.apply_ok();
    let inside = ct.exec_ok(&["readlink", "/proc/self/ns/net"]);
    assert_eq!(inside.trim(), std::fs::read_link("/proc/self/ns/net").unwrap().to_str().unwrap());
    let made: Vec<String> = footprint(&ct.name, &[]).into_iter().filter(|l| !l.starts_with("/sys/fs/cgroup")).collect();
    assert!(made.is_empty(), "host mode made a veth or rules: {made:?}");
}

// ---- exec, logs, stop ----------------------------------------------------------------

#[test]
fn exec_passes_the_exit_code_and_streams() {
    require_host!();
    let ct = Ct::new("exec", SLEEPER);
    ct.apply_ok();
    assert_eq!(ct.exec(&["sh", "-c", "exit 7"]).status.code(), Some(7));
    let out = ct.exec(&["sh", "-c", "echo out; echo err >&2"]);
    assert_eq!((text(&out.stdout).as_str(), text(&out.stderr).as_str()), ("out\n", "err\n"));
    let mut child =
        container().args(["exec", &ct.name, "--", "cat"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"through stdin\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout), "through stdin\n");
    assert_eq!(ct.exec(&["no-such-command"]).status.code(), Some(127));
    // -t: a terminal from the container's own devpts.
    let out = container().args(["exec", "-t", &ct.name, "--", "sh", "-c", "tty; exit 3"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stdout).trim().starts_with("/dev/pts/"), "{}", text(&out.stdout));
    let missing = run(&["exec", "no-such-container", "--", "true"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("no container"), "{}", text(&missing.stderr));
}

#[test]
fn logs_show_a_services_output() {
    require_host!();
    let ct = Ct::new(
        "logs",
        "[processes.talker]\ncommand = [\"/bin/sh\", \"-c\", \"echo hello-from-talker; echo oops >&2; exec sleep infinity\"]\n[processes.quiet]\ncommand = [\"/bin/sleep\", \"infinity\"]\n",
    );
    ct.apply_ok();
    let log =
        eventually("talker's output", 30, || Some(ok(&["logs", &ct.name, "talker"])).filter(|l| l.contains("oops")));
    assert!(log.contains("hello-from-talker"), "{log}");
    let all = ok(&["logs", &ct.name]);
    assert!(all.contains("talker | hello-from-talker"), "{all}");
    assert!(!run(&["logs", &ct.name, "nope"]).status.success());
}

/// `2026-12-03T22:00:00.123456789Z` (the form `logs --timestamps` prints) as Unix
/// nanoseconds, checked independently of the tool's own parser.
fn utc_nanos(t: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| -> i64 { t[r].parse().unwrap_or_else(|_| panic!("not a time: {t}")) };
    assert!(t.len() == 30 && &t[10..11] == "T" && t.ends_with('Z'), "not a UTC RFC 3339 time: {t}");
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let (y, mp) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let doe = (y % 400) * 365 + (y % 400) / 4 - (y % 400) / 100 + (153 * mp + 2) / 5 + d - 1;
    let days = (y / 400) * 146_097 + doe - 719_468;
    ((days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)) * 1_000_000_000) + n(20..29)
}

fn unix_nanos() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

#[test]
fn logs_tail_since_and_timestamps_use_the_supervisors_times() {
    require_host!();
    let ct = Ct::new(
        "logtimes",
        "[processes.clock]\ncommand = [\"/bin/sh\", \"-c\", \"echo a1; echo a2; sleep 4; echo b1; echo b2 >&2; echo b3; exec sleep infinity\"]\n",
    );
    let started = unix_nanos();
    ct.apply_ok();
    eventually("the last line", 30, || Some(ok(&["logs", &ct.name])).filter(|l| l.contains("b3")));
    let seen = unix_nanos();
    // The log itself holds the service's bytes only.
    assert_eq!(ok(&["logs", &ct.name]), "a1\na2\nb1\nb2\nb3\n");
    assert_eq!(ok(&["logs", &ct.name, "--tail", "2"]), "b2\nb3\n");
    assert_eq!(ok(&["logs", &ct.name, "clock", "--tail", "0"]), "");
    assert_eq!(ok(&["logs", &ct.name, "--tail", "99"]), "a1\na2\nb1\nb2\nb3\n");

    let stamped = ok(&["logs", &ct.name, "--timestamps"]);
    let lines: Vec<(i64, &str)> = stamped
        .lines()
        .map(|l| {
            let (t, rest) = l.split_once(' ').unwrap_or_else(|| panic!("no time: {l:?}"));
            (utc_nanos(t), rest)
        })
        .collect();
    assert_eq!(lines.iter().map(|l| l.1).collect::<Vec<_>>(), ["a1", "a2", "b1", "b2", "b3"], "{stamped}");
    let t: Vec<i64> = lines.iter().map(|l| l.0).collect();
    assert!(t.windows(2).all(|w| w[0] <= w[1]), "times go back:\n{stamped}");
    assert!(started <= t[0] && t[4] <= seen, "times outside the test's run:\n{stamped}");
    // Written when received, not when read: the service's `sleep 4` is between a2 and b1.
    let gap = t[2] - t[1];
    assert!((3_500_000_000..10_000_000_000).contains(&gap), "a2→b1 took {gap} ns:\n{stamped}");
    assert_eq!(
        ok(&["logs", &ct.name, "--tail", "1", "--timestamps"]),
        format!("{} b3\n", stamped.lines().last().unwrap().split_once(' ').unwrap().0)
    );

    // An RFC 3339 time: exactly the lines received at or after it.
    let b1 = stamped.lines().nth(2).unwrap().split_once(' ').unwrap().0;
    assert_eq!(ok(&["logs", &ct.name, "--since", b1]), "b1\nb2\nb3\n");
    assert_eq!(ok(&["logs", &ct.name, "--since", b1, "--tail", "1"]), "b3\n");
    assert_eq!(ok(&["logs", &ct.name, "--since", "2100-01-01T00:00:00+01:00"]), "");
    assert_eq!(ok(&["logs", &ct.name, "--since", "1d"]), "a1\na2\nb1\nb2\nb3\n");
    // A duration: back from now to 1-2 s before b1 (a2 is 4 s before it).
    let secs = (unix_nanos() - t[2]) / 1_000_000_000 + 2;
    assert_eq!(ok(&["logs", &ct.name, "--since", &format!("{secs}s")]), "b1\nb2\nb3\n");
    let secs = (unix_nanos() - t[0]) / 1_000_000_000 + 2;
    assert_eq!(ok(&["logs", &ct.name, "--since", &format!("{secs}s")]), "a1\na2\nb1\nb2\nb3\n");
}

#[test]
fn stop_ends_a_service_that_ignores_sigterm_at_the_timeout() {
    require_host!();
    let ct = Ct::new(
        "term",
        "[processes.stubborn]\ncommand = [\"/bin/sh\", \"-c\", \"trap '' TERM; while :; do sleep 0.1; done\"]\n",
    );
    ct.apply_ok();
    let t = Instant::now();
    ok(&["stop", &ct.name, "--timeout", "1"]);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(900), "stop returned before the timeout: {took:?}");
    assert_eq!(ct.status()["state"], "stopped");
}

// ---- locking and crash safety ------------------------------------------------------------

#[test]
fn a_second_apply_waits_for_the_first() {
    require_host!();
    let ct = Ct::new("lock", SLEEPER);
    ct.apply_ok();
    let lock = ct.dirs().join(".lock");
    let mut holder = Command::new("flock").arg(&lock).args(["-c", "sleep 1.5"]).spawn().unwrap();
    eventually("the lock holder", 30, || {
        let out = Command::new("flock").args(["-n"]).arg(&lock).arg("true").status().ok()?;
        (!out.success()).then_some(())
    });
    ct.write(&format!("hostname = \"after-lock\"\n{SLEEPER}"));
    let out = ct.apply();
    let _ = holder.wait();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("waiting: another `container` command is working on"), "{}", text(&out.stderr));
    assert_eq!(ct.exec_ok(&["hostname"]).trim(), "after-lock");
}

#[test]
fn a_crash_at_any_step_of_apply_converges_and_destroy_cleans_up() {
    require_host!();
    let port = 21000 + slice() as u16;
    let n = 30;
    let body = format!(
        "[network]\nipv4 = \"{}\"\nipv6 = \"{}\"\nnat = true\npublish = [\"{port}:8080\"]\n{}",
        v4(n),
        v6(n),
        "[[files]]\npath = \"/srv/www/index.html\"\ncontent = \"survived\"\n[processes.web]\ncommand = [\"/usr/bin/python3\", \"-m\", \"http.server\", \"8080\", \"--bind\", \"::\", \"--directory\", \"/srv/www\"]\nready = { tcp = 8080 }\n"
    );
    let ct = Ct::new("crash", &body);
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    // Every crash point the code knows, in the order apply reaches them.
    let steps = container::runtime::CrashPoint::ALL;
    for (i, step) in steps.iter().enumerate() {
        // Every round changes the hostname, so the apply recreates the container
        // (after a destroy: creates it) and passes every step.
        ct.write(&format!("hostname = \"h{i}\"\n{body}"));
        let out = container().args(["apply"]).arg(ct.spec()).env("CONTAINER_TEST_CRASH", step.name()).output().unwrap();
        assert_eq!(out.status.signal(), Some(9), "apply did not crash at {step}: {}", text(&out.stdout));
        ct.apply_ok();
        let got = try_get(&v4(n), 8080);
        assert!(got.as_deref().is_ok_and(|b| b.contains("survived")), "not converged after a crash at {step}: {got:?}");
        let got = try_get("127.0.0.1", port);
        assert!(got.as_deref().is_ok_and(|b| b.contains("survived")), "publish not converged after {step}: {got:?}");
        if i % 3 == 2 {
            ok(&["destroy", &ct.name]);
            assert_eq!(footprint(&ct.name, &[v4(n), v6(n)]), Vec::<String>::new(), "destroy after {step} left these");
        }
    }
    // Crashes while changing a running container in place (a file edit).
    for (i, step) in container::runtime::CrashPoint::LIVE.iter().enumerate() {
        let edited = body.replace("content = \"survived\"", &format!("content = \"edit {i}\""));
        ct.write(&format!("hostname = \"h{}\"\n{edited}", steps.len() - 1));
        let out = container().args(["apply"]).arg(ct.spec()).env("CONTAINER_TEST_CRASH", step.name()).output().unwrap();
        assert_eq!(out.status.signal(), Some(9), "live apply did not crash at {step}: {}", text(&out.stderr));
        ct.apply_ok();
        assert!(http_get(&v4(n), 8080).contains(&format!("edit {i}")), "live edit not converged after {step}");
    }
    // A crash, then destroy right away.
    ct.write(&format!("hostname = \"last\"\n{body}"));
    let out = container().args(["apply"]).arg(ct.spec()).env("CONTAINER_TEST_CRASH", "nft").output().unwrap();
    assert_eq!(out.status.signal(), Some(9));
    ok(&["destroy", &ct.name, "--volumes"]);
    assert_eq!(footprint(&ct.name, &[v4(n), v6(n)]), Vec::<String>::new());
    let mounts_after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let ours = |m: &str| m.lines().filter(|l| l.contains(root().to_str().unwrap())).count();
    assert_eq!(ours(&mounts_after), ours(&mounts_before));
}

#[test]
fn start_and_stop_of_a_routed_container_that_publishes_nothing_run_no_nft() {
    require_host!();
    // A root of its own: this binary's other tests rewrite their root's table.
    let own = tempfile::tempdir().unwrap();
    let n = 42;
    let spec = own.path().join("nonft.toml");
    let body =
        format!("name = \"nonft\"\n[network]\nipv4 = \"{}\"\nipv6 = \"{}\"\nnat = true\n{SLEEPER}", v4(n), v6(n));
    std::fs::write(&spec, body).unwrap();
    let run_ok = |args: &[&str]| {
        let out = container_on(own.path()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    };
    run_ok(&["apply", spec.to_str().unwrap()]);
    // The batch last given to `nft`: rewritten (a new file) whenever `nft` runs.
    let cache = own.path().join(".nft.json");
    let stamp = || {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&cache).expect("the nft cache");
        (m.ino(), m.mtime(), m.mtime_nsec())
    };
    let applied = stamp();
    run_ok(&["stop", "nonft"]);
    assert_eq!(stamp(), applied, "stop ran nft");
    run_ok(&["start", "nonft"]);
    assert_eq!(stamp(), applied, "start ran nft");
    run_ok(&["destroy", "nonft"]);
    let table = container::runtime::layout::StateRoot::new(own.path()).nft_table();
    let listed = String::from_utf8_lossy(&host(&["nft", "list", "table", "inet", &table]).stdout).into_owned();
    assert!(!listed.contains("container:"), "rules left after destroy:\n{listed}");
}

#[test]
fn a_hundred_start_stop_cycles_leak_nothing() {
    require_host!();
    let n = 40;
    let ct = Ct::new("cyc", &format!("[network]\nipv4 = \"{}\"\nipv6 = \"{}\"\nnat = true\n{SLEEPER}", v4(n), v6(n)));
    ct.apply_ok();
    ok(&["stop", &ct.name]);
    let addrs = [v4(n), v6(n)];
    assert!(stopped_footprint(&ct.name, &addrs).is_empty());
    let ours = |m: String| m.lines().filter(|l| l.contains(root().to_str().unwrap())).count();
    let mounts = ours(std::fs::read_to_string("/proc/self/mountinfo").unwrap());
    // Open fds anywhere on the host into this container's folder (its PID 1 holds its
    // supervisor.log, a leaked fd would show up too): none once it is stopped.
    let dir = ct.dirs();
    let procs = || {
        let mut holders = Vec::new();
        for p in std::fs::read_dir("/proc").unwrap().flatten() {
            for fd in std::fs::read_dir(p.path().join("fd")).into_iter().flatten().flatten() {
                if std::fs::read_link(fd.path()).is_ok_and(|t| t.starts_with(&dir)) {
                    holders.push(format!("{} {}", p.path().display(), fd.path().display()));
                }
            }
        }
        holders
    };
    assert_eq!(procs(), Vec::<String>::new());
    for i in 0..100 {
        let out = run(&["start", &ct.name]);
        assert!(out.status.success(), "start #{i}: {}", text(&out.stderr));
        let out = run(&["stop", &ct.name]);
        assert!(out.status.success(), "stop #{i}: {}", text(&out.stderr));
    }
    assert_eq!(stopped_footprint(&ct.name, &addrs), Vec::<String>::new());
    assert_eq!(ours(std::fs::read_to_string("/proc/self/mountinfo").unwrap()), mounts, "mounts leaked");
    assert_eq!(procs(), Vec::<String>::new(), "a process or fd outlived its stop");
}

#[test]
fn memory_and_pids_limits_apply_on_this_hosts_cgroups() {
    require_host!();
    let ct = Ct::new("lim", &format!("[limits]\nmemory = \"64M\"\npids = 32\n{SLEEPER}"));
    let out = ct.apply();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pid1 = ct.pid1().to_string();
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    // cgroup v1 controllers (this machine's hybrid layout) or cgroup2 (a pure v2 host).
    let (mem, pids, procs) = if Path::new("/sys/fs/cgroup/memory").is_dir() {
        (
            read(&format!("/sys/fs/cgroup/memory/container/{}/memory.limit_in_bytes", ct.key())),
            read(&format!("/sys/fs/cgroup/pids/container/{}/pids.max", ct.key())),
            read(&format!("/sys/fs/cgroup/memory/container/{}/cgroup.procs", ct.key())),
        )
    } else {
        (
            read(&format!("/sys/fs/cgroup/container/{}/memory.max", ct.key())),
            read(&format!("/sys/fs/cgroup/container/{}/pids.max", ct.key())),
            read(&format!("/sys/fs/cgroup/container/{}/cgroup.procs", ct.key())),
        )
    };
    match (mem, pids) {
        (Some(m), Some(p)) => {
            assert_eq!(m, (64u64 << 20).to_string());
            assert_eq!(p, "32");
            assert!(procs.unwrap_or_default().lines().any(|l| l == pid1), "PID 1 is not in the container's cgroup");
        }
        // A host without the controllers: apply must say so.
        _ => assert!(text(&out.stderr).contains("warning"), "no limits and no warning: {}", text(&out.stderr)),
    }
    ok(&["stop", &ct.name]);
    assert!(footprint(&ct.name, &[]).is_empty(), "cgroups left after stop");
}

#[test]
fn bad_input_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let empty_root = dir.path().join("root");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"bad\"\nbase = \"host\"\n[network]\nipv4 = \"300.1.1.1\"\n").unwrap();
    // A root that cannot be built: the build fails before anything is recorded.
    let debian = dir.path().join("deb.toml");
    let deb =
        "name = \"deb\"\nbase = \"debian:bookworm\"\nmirror = \"file:///nonexistent\"\n[network]\nipv4 = \"auto\"\n";
    std::fs::write(&debian, deb).unwrap();
    for (spec, expect) in [(&bad, "bad.toml:4:"), (&debian, "debootstrap")] {
        let out = Command::new(env!("CARGO_BIN_EXE_container"))
            .arg("--root")
            .arg(&empty_root)
            .arg("--cache")
            .arg(dir.path().join("cache"))
            .arg("apply")
            .arg(spec)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains(expect), "{}", text(&out.stderr));
    }
    // No plan, no pool entry, no container state: at most the lock files.
    let left: Vec<String> =
        walk(&empty_root).into_iter().filter(|p| !Path::new(p).is_dir() && !p.ends_with("lock")).collect();
    assert_eq!(left, Vec::<String>::new());
    assert!(!empty_root.join("pool.json").exists());
    assert!(!empty_root.join("containers/deb/state.json").exists());
}

fn walk(p: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        let path = e.path();
        out.push(path.display().to_string());
        if path.is_dir() {
            out.extend(walk(&path));
        }
    }
    out
}

/// The README's first command: `apply` without a file runs the embedded example and
/// says how to reach it.
#[test]
fn apply_without_a_file_runs_the_embedded_example() {
    require_host!();
    struct Hello;
    impl Drop for Hello {
        fn drop(&mut self) {
            let _ = run(&["destroy", "hello", "--volumes"]);
        }
    }
    let _hello = Hello;
    let out = run(&["apply"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let url = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("try: curl "))
        .unwrap_or_else(|| panic!("no curl hint in: {stdout}"))
        .to_string();
    let hostport = url.trim_start_matches("http://").trim_end_matches('/');
    let (host, port) = hostport.rsplit_once(':').unwrap();
    assert!(http_get(host, port.parse().unwrap()).contains("Hello from a container"), "{url}");
}

#[test]
fn a_failing_service_fails_the_apply_and_the_next_apply_retries() {
    require_host!();
    let ct = Ct::new(
        "fail",
        "[processes.broken]\ncommand = [\"/bin/sh\", \"-c\", \"echo cannot start >&2; exit 3\"]\nrestart = \"no\"\nready = { tcp = 9 }\n",
    );
    let out = ct.apply();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("service broken"), "{}", text(&out.stderr));
    assert!(ct.dirs().join("pending.json").exists() && !ct.dirs().join("state.json").exists());
    // `status` shows the exit code and the restart count.
    let st: Value = serde_json::from_str(&ok(&["status", &ct.name, "--json"])).unwrap();
    let svc = &st["status"]["services"]["broken"];
    assert_eq!(
        (svc["state"].as_str(), svc["last_exit"]["code"].as_i64(), svc["restarts"].as_i64()),
        (Some("failed"), Some(3), Some(0)),
        "{st}"
    );
    let human = ok(&["status", &ct.name]);
    assert!(
        human.contains("service broken") && human.contains("restarts 0") && human.contains("last exit code 3"),
        "{human}"
    );
    // Not "No changes": the next apply tries again.
    let again = ct.apply();
    assert_eq!(again.status.code(), Some(1));
    assert!(!text(&again.stdout).contains("No changes"), "{}", text(&again.stdout));
    ct.write(SLEEPER);
    ct.apply_ok();
}

#[test]
fn auto_addresses_come_from_a_persistent_pool() {
    require_host!();
    let spec = format!("[network]\nipv4 = \"auto\"\nipv6 = \"auto\"\n{SLEEPER}");
    let a = Ct::new("pa", &spec);
    let b = Ct::new("pb", &spec);
    a.apply_ok();
    b.apply_ok();
    let addr = |ct: &Ct| ct.status()["ipv4"].as_str().map(str::to_string).expect("an address");
    let (aa, ba) = (addr(&a), addr(&b));
    assert_ne!(aa, ba, "two containers got one address");
    let pool: Value = serde_json::from_str(&std::fs::read_to_string(root().join("pool.json")).unwrap()).unwrap();
    assert_eq!(pool["ipv4"][&a.name].as_str(), aa.split('/').next());
    // Kept across stop/start and a recreating re-apply.
    ok(&["restart", &a.name]);
    a.write(&format!("hostname = \"moved\"\n{spec}"));
    a.apply_ok();
    assert_eq!(addr(&a), aa);
    assert!(ping(aa.split('/').next().unwrap()));
    // Freed by destroy.
    ok(&["destroy", &a.name]);
    let pool: Value = serde_json::from_str(&std::fs::read_to_string(root().join("pool.json")).unwrap()).unwrap();
    assert!(pool["ipv4"].get(&a.name).is_none() && pool["ipv6"].get(&a.name).is_none(), "{pool}");
    assert_eq!(pool["ipv4"][&b.name].as_str(), ba.split('/').next());
}

#[test]
fn a_crash_looping_service_fails_the_apply_early() {
    require_host!();
    // `restart = "always"` retries forever with a backoff: apply must not wait its
    // whole readiness timeout (90 s) for a service that dies at every start.
    let ct = Ct::new(
        "loop",
        "[processes.looping]\ncommand = [\"/bin/sh\", \"-c\", \"echo dying >&2; exit 4\"]\nrestart = \"always\"\nready = { tcp = 9 }\n",
    );
    let t = Instant::now();
    let out = ct.apply();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("service looping: keeps exiting") && err.contains("last exit code 4"), "{err}");
    // Three restarts with a 0.1 s doubling backoff, far below the 90 s timeout
    // (a generous bound: this is about not waiting for the timeout, not speed).
    assert!(t.elapsed() < Duration::from_secs(30), "took {:?}", t.elapsed());
    assert!(ct.dirs().join("pending.json").exists(), "the next apply must retry");
}

#[test]
fn destroying_an_unknown_name_fails_and_leaves_no_trace() {
    let name = format!("t{}ghost", slice());
    let out = run(&["destroy", &name]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no container"), "{}", text(&out.stderr));
    assert!(!root().join("containers").join(&name).exists(), "a folder (lock file) was left for an unknown name");
}
