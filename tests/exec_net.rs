//! Real tests of `exec::net` (veth, addresses, routes over netlink) and `exec::nft`
//! (the tool's nftables table): the host tier (`require_host!`; the two error-path
//! tests need no root). They need root, `ip` (iproute2, only to build the scene and
//! inspect it), `ping` (iputils-ping), `nft` (nftables) and `python3`.
//!
//! Every namespace, interface and address is made by the test itself: names start
//! with `ctt<pid>` / `ct-t<pid>`, addresses come from 100.72.0.0/16 and
//! fd63:6f6e:7461:696e::/64 (a per-process /24 and /112-ish slice), and Drop guards
//! remove them even when an assertion fails. Traffic only goes to those namespaces
//! and to loopback. Tests that touch the single nftables table hold `NFT_LOCK`.

mod support;
use container::exec::net::{self, host_ifname, Step};
use container::exec::nft::{self, ContainerNet};
use container::plan::types::NetworkRes;
use container::spec::types::NetMode;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::net::{host_json as json, Link, Netns};
// `cmd` and `ok` run host programs (`ok`: one that must succeed) in this suite.
use support::{host as cmd, host_ok as ok, Bg};

static NFT_LOCK: Mutex<()> = Mutex::new(());
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn pid() -> u32 {
    std::process::id()
}

/// Third IPv4 octet / IPv6 group of this test process: keeps parallel runs apart.
fn slice() -> u32 {
    pid() % 250 + 1
}

/// A namespace of this test process: `ctt<pid><tag><n>`.
fn netns(tag: &str) -> Netns {
    Netns::new(&format!("ctt{}{}{}", pid(), tag, COUNTER.fetch_add(1, Ordering::Relaxed)))
}

/// Clears the nftables table at the end of a test, even a failed one.
struct NftGuard;

impl Drop for NftGuard {
    fn drop(&mut self) {
        let _ = nft::apply(&[]);
    }
}

fn network(n: u32, nat: bool) -> NetworkRes {
    let p = slice();
    NetworkRes {
        mode: NetMode::Routed,
        ipv4: Some(format!("100.72.{p}.{n}/32").parse().unwrap()),
        ipv6: Some(format!("fd63:6f6e:7461:696e::{p:x}:{n:x}/128").parse().unwrap()),
        auto: false,
        nat,
        proxy_arp: None,
        prefixes: BTreeSet::new(),
        publish: BTreeSet::new(),
        nameservers: vec![],
        sysctls: BTreeMap::new(),
    }
}

/// The address of a plan's "addr/32" or "addr/128", as text ("" for none).
fn addr<T: std::fmt::Display>(s: &Option<T>) -> String {
    s.as_ref().map(|a| a.to_string()).unwrap_or_default().split('/').next().unwrap_or_default().to_string()
}

fn ping(argv_prefix: &[&str], target: &str) -> bool {
    // A few tries: the very first packet may wait for neighbour resolution.
    (0..5).any(|_| {
        let mut argv = argv_prefix.to_vec();
        argv.extend_from_slice(&["ping", "-c1", "-W1", target]);
        cmd(&argv).status.success()
    })
}

/// Host state relevant to one container: its links, routes through it or to its
/// addresses, and proxy neighbours for its addresses (everything else is churn from
/// other tests and is ignored).
fn host_state(veth: &str, addrs: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for l in json(&["ip", "-j", "link"]).as_array().unwrap() {
        if l["ifname"] == veth {
            out.push(format!("link {}", l["ifname"]));
        }
    }
    for fam in ["-4", "-6"] {
        for r in json(&["ip", "-j", fam, "route"]).as_array().unwrap() {
            let dst = r["dst"].as_str().unwrap_or("");
            let mentions = r["dev"] == veth || addrs.iter().any(|a| dst.starts_with(a));
            if mentions {
                out.push(format!("route {r}"));
            }
        }
        for n in json(&["ip", "-j", fam, "neigh", "show", "proxy"]).as_array().unwrap() {
            if addrs.iter().any(|a| n["dst"] == *a) {
                out.push(format!("proxy {n}"));
            }
        }
    }
    out
}

fn routes_in(ns: &Netns, fam: &str) -> Vec<Value> {
    ns.json(&["ip", "-j", fam, "route"]).as_array().unwrap().clone()
}

fn count_addr(ifaddrs: &Value, local: &str) -> usize {
    ifaddrs
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["addr_info"].as_array().unwrap().iter())
        .filter(|a| a["local"] == local)
        .count()
}

#[test]
fn routed_network_pings_both_ways_reapplies_and_tears_down() {
    require_host!();
    let p = slice();
    let name = format!("t{}r", pid());
    let veth = host_ifname(&name);
    let _veth_guard = Link(veth.clone());
    let uplink = format!("ctt{}u{}", pid(), COUNTER.fetch_add(1, Ordering::Relaxed));
    ok(&["ip", "link", "add", &uplink, "type", "veth", "peer", "name", &format!("{uplink}p")]);
    let _uplink_guard = Link(uplink.clone());

    let mut net4 = network(10, false);
    net4.prefixes.insert(format!("100.72.{p}.128/28").parse().unwrap());
    net4.prefixes.insert(format!("fd63:6f6e:7461:696e:0:{p:x}:100:0/112").parse().unwrap());
    net4.proxy_arp = Some(uplink.parse().unwrap());
    net4.sysctls.insert("net.ipv4.ip_default_ttl".into(), "77".into());
    let v4 = addr(&net4.ipv4);
    let v6 = addr(&net4.ipv6);
    let watched = [v4.as_str(), v6.as_str(), &format!("100.72.{p}.128")[..]];
    let before = host_state(&veth, &watched);
    assert!(before.is_empty(), "leftovers from an earlier run: {before:?}");

    let ns = netns("c");
    let nsfile = ns.file();
    net::setup(&name, &net4, nsfile.as_fd()).expect("setup");

    // Reachability: host → container, container → both gateways.
    assert!(ping(&[], &v4), "host cannot ping the container's IPv4 {v4}");
    assert!(ping(&[], &v6), "host cannot ping the container's IPv6 {v6}");
    let inside = ["ip", "netns", "exec", ns.name.as_str()];
    assert!(ping(&inside, "169.254.0.1"), "container cannot ping 169.254.0.1");
    assert!(ping(&inside, "fe80::1%eth0"), "container cannot ping fe80::1%eth0");

    // Container routes.
    let r4 = routes_in(&ns, "-4");
    assert!(
        r4.iter().any(|r| r["dst"] == "default"
            && r["gateway"] == "169.254.0.1"
            && r["dev"] == "eth0"
            && r["flags"].as_array().is_some_and(|f| f.contains(&Value::from("onlink")))),
        "{r4:#?}"
    );
    assert!(r4.iter().any(|r| r["dst"] == "169.254.0.1" && r["dev"] == "eth0" && r["scope"] == "link"), "{r4:#?}");
    let r6 = routes_in(&ns, "-6");
    assert!(r6.iter().any(|r| r["dst"] == "default" && r["gateway"] == "fe80::1" && r["dev"] == "eth0"), "{r6:#?}");
    // Host routes.
    let h4 = json(&["ip", "-j", "-4", "route", "show", "dev", &veth]);
    let h4 = h4.as_array().unwrap();
    assert!(h4.iter().any(|r| r["dst"] == v4.as_str()), "{h4:#?}");
    assert!(h4.iter().any(|r| r["dst"] == format!("100.72.{p}.128/28") && r["gateway"] == v4.as_str()), "{h4:#?}");
    let h6 = json(&["ip", "-j", "-6", "route", "show", "dev", &veth]);
    let h6 = h6.as_array().unwrap();
    assert!(h6.iter().any(|r| r["dst"] == v6.as_str()), "{h6:#?}");
    assert!(
        h6.iter().any(|r| r["dst"] == format!("fd63:6f6e:7461:696e:0:{p:x}:100:0/112") && r["gateway"] == v6.as_str()),
        "{h6:#?}"
    );
    // Forwarding, proxy ARP/NDP.
    assert_eq!(std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap().trim(), "1");
    assert_eq!(std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/forwarding").unwrap().trim(), "1");
    assert_eq!(std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{uplink}/proxy_arp")).unwrap().trim(), "1");
    assert_eq!(std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{uplink}/proxy_ndp")).unwrap().trim(), "1");
    let proxies = json(&["ip", "-j", "-6", "neigh", "show", "proxy", "dev", &uplink]);
    assert!(proxies.as_array().unwrap().iter().any(|n| n["dst"] == v6.as_str()), "{proxies:#?}");
    // The container's sysctl landed in its namespace, not on the host.
    assert_eq!(ns.ok(&["cat", "/proc/sys/net/ipv4/ip_default_ttl"]).trim(), "77");
    assert_ne!(std::fs::read_to_string("/proc/sys/net/ipv4/ip_default_ttl").unwrap().trim(), "77");

    // Re-apply: no error, nothing duplicated.
    let host_routes_once = host_state(&veth, &watched);
    net::setup(&name, &net4, nsfile.as_fd()).expect("second setup");
    assert_eq!(host_state(&veth, &watched), host_routes_once);
    let host_addrs = json(&["ip", "-j", "addr", "show", "dev", &veth]);
    assert_eq!(count_addr(&host_addrs, "169.254.0.1"), 1);
    assert_eq!(count_addr(&host_addrs, "fe80::1"), 1);
    let ct_addrs = ns.json(&["ip", "-j", "addr", "show", "dev", "eth0"]);
    assert_eq!(count_addr(&ct_addrs, &v4), 1);
    assert_eq!(count_addr(&ct_addrs, &v6), 1);
    assert_eq!(routes_in(&ns, "-4").iter().filter(|r| r["dst"] == "default").count(), 1);
    assert_eq!(routes_in(&ns, "-6").iter().filter(|r| r["dst"] == "default").count(), 1);
    let links: Vec<Value> = ns.json(&["ip", "-j", "link"]).as_array().unwrap().clone();
    assert_eq!(links.len(), 2, "lo and eth0 only: {links:#?}");
    assert!(ping(&[], &v4));

    // Teardown: back to the baseline; a second teardown is a no-op.
    net::teardown(&name, &net4).expect("teardown");
    assert_eq!(host_state(&veth, &watched), before);
    net::teardown(&name, &net4).expect("second teardown");
    // The container keeps only its loopback.
    let links: Vec<Value> = ns.json(&["ip", "-j", "link"]).as_array().unwrap().clone();
    assert_eq!(links.len(), 1, "{links:#?}");
}

#[test]
fn setup_in_the_namespace_of_a_process() {
    require_host!();
    let name = format!("t{}p", pid());
    let veth = host_ifname(&name);
    let _guard = Link(veth.clone());
    let mut net4 = network(11, false);
    net4.ipv6 = None;
    let v4 = addr(&net4.ipv4);
    let mut child = Bg(Command::new("unshare").args(["--net", "--", "sleep", "60"]).spawn().expect("unshare"));
    let cpid = child.0.id() as i32;
    // Wait until unshare has switched namespaces (then it execs sleep).
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_link(format!("/proc/{cpid}/ns/net")).ok().as_ref() == Some(&ours) {
        assert!(Instant::now() < deadline, "unshare did not switch namespaces");
        std::thread::sleep(Duration::from_millis(5));
    }
    let fd = net::open_netns(cpid).expect("open netns");
    net::setup(&name, &net4, fd.as_fd()).expect("setup");
    assert!(ping(&[], &v4));
    // The namespace dies with its last process; teardown still works afterwards.
    let _ = child.0.kill();
    let _ = child.0.wait();
    drop(fd);
    net::teardown(&name, &net4).expect("teardown");
    assert!(host_state(&veth, &[&v4]).is_empty());
}

#[test]
fn container_side_without_namespace_is_an_error() {
    let steps = vec![Step::LinkUp { side: net::Side::Container, dev: "lo".into() }];
    assert!(matches!(net::run(&steps, None), Err(net::NetError::NoNamespace)));
}

#[test]
fn missing_interface_is_reported_with_its_name() {
    let dev = format!("ctt{}none", pid());
    let steps = vec![Step::LinkUp { side: net::Side::Host, dev: dev.clone() }];
    let err = net::run(&steps, None).unwrap_err();
    assert!(err.to_string().contains(&dev), "{err}");
}

fn table_rules() -> Option<Vec<Value>> {
    let out = cmd(&["nft", "-j", "list", "table", "inet", "container"]);
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).expect("nft json");
    Some(v["nftables"].as_array().unwrap().iter().filter_map(|o| o.get("rule").cloned()).collect())
}

fn fake(name: &str, n: u32) -> ContainerNet {
    let p = slice();
    ContainerNet {
        name: name.into(),
        ipv4: Some(format!("100.72.{p}.{n}").parse().unwrap()),
        ipv6: Some(format!("fd63:6f6e:7461:696e::{p:x}:{n:x}").parse().unwrap()),
        nat: true,
        publish: vec![container::spec::values::Publish::parse(&format!("{}:80", 20000 + n)).unwrap().0],
        veth: host_ifname(name),
        prefixes: vec![],
    }
}

#[test]
fn nft_table_follows_the_desired_state() {
    require_host!();
    let _lock = NFT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let _clean = NftGuard;
    let a = fake(&format!("t{}a", pid()), 20);
    let b = fake(&format!("t{}b", pid()), 21);
    nft::apply(&[a.clone(), b.clone()]).expect("apply two");
    let rules = table_rules().expect("table exists");
    let owned = |c: &ContainerNet| rules.iter().filter(|r| r["comment"] == format!("container:{}", c.name)).count();
    // masquerade + loopback masquerade + 2×(v4+v6 DNAT) + 4 fence = 10 each.
    assert_eq!(owned(&a), 10, "{rules:#?}");
    assert_eq!(owned(&b), 10);
    let listing = ok(&["nft", "list", "table", "inet", "container"]);
    assert!(listing.contains(&format!("dnat ip to {}:80", a.ipv4.unwrap())), "{listing}");
    assert!(listing.contains(&format!("dnat ip6 to [{}]:80", a.ipv6.unwrap())), "{listing}");
    assert!(listing.contains(&format!("oifname != \"{}\" masquerade", a.veth)), "{listing}");

    nft::apply(std::slice::from_ref(&b)).expect("apply one");
    let rules = table_rules().expect("table exists");
    assert!(rules.iter().all(|r| r["comment"] == format!("container:{}", b.name)), "{rules:#?}");
    assert_eq!(rules.len(), 10);

    nft::apply(&[]).expect("apply none");
    assert!(table_rules().is_none());
    assert!(!ok(&["nft", "list", "tables"]).contains("inet container"));
    // Deleting an absent table is fine too.
    nft::apply(&[]).expect("apply none again");
}

/// Serves one line per connection: the peer address it saw.
const SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", int(sys.argv[1])))
s.listen()
while True:
    c, a = s.accept()
    peer = a[0][7:] if a[0].startswith("::ffff:") else a[0]
    c.sendall((peer + "\n").encode())
    c.close()
"#;

/// Connects and prints the server's line, retrying while the server starts.
const CLIENT: &str = r#"
import socket, sys, time
for i in range(50):
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
        print(c.recv(200).decode().strip())
        sys.exit(0)
    except OSError as e:
        err = e
        time.sleep(0.1)
print(err, file=sys.stderr)
sys.exit(1)
"#;

fn fetch(ns: &Netns, host: &str, port: u16) -> String {
    ns.ok(&["python3", "-c", CLIENT, host, &port.to_string()]).trim().to_string()
}

#[test]
fn nat_and_publish_carry_real_traffic() {
    require_host!();
    let _lock = NFT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let _clean = NftGuard;
    let p = slice();

    // The "outside" host: its own namespace behind its own veth, test addresses.
    let outside = netns("o");
    let out_host = format!("ctt{}o{}", pid(), COUNTER.fetch_add(1, Ordering::Relaxed));
    ok(&["ip", "link", "add", &out_host, "type", "veth", "peer", "name", "eth0", "netns", &outside.name]);
    let _out_guard = Link(out_host.clone());
    let (host4, far4) = (format!("100.72.{p}.201"), format!("100.72.{p}.202"));
    let (host6, far6) = (format!("fd63:6f6e:7461:696e:ff:{p:x}:0:1"), format!("fd63:6f6e:7461:696e:ff:{p:x}:0:2"));
    ok(&["ip", "addr", "add", &format!("{host4}/30"), "dev", &out_host]);
    ok(&["ip", "-6", "addr", "add", &format!("{host6}/112"), "dev", &out_host, "nodad"]);
    ok(&["ip", "link", "set", &out_host, "up"]);
    outside.ok(&["ip", "addr", "add", &format!("{far4}/30"), "dev", "eth0"]);
    outside.ok(&["ip", "-6", "addr", "add", &format!("{far6}/112"), "dev", "eth0", "nodad"]);
    outside.ok(&["ip", "link", "set", "eth0", "up"]);
    outside.ok(&["ip", "link", "set", "lo", "up"]);

    // The container, set up by the code under test, with NAT and a published port.
    let name = format!("t{}n", pid());
    let veth = host_ifname(&name);
    let _veth_guard = Link(veth.clone());
    let mut netres = network(12, true);
    let published: u16 = 18000 + (p as u16);
    netres.publish.insert(format!("{published}:80/tcp").parse().unwrap());
    let ct = netns("n");
    let ctfile = ct.file();
    net::setup(&name, &netres, ctfile.as_fd()).expect("setup");
    let desired = ContainerNet::from_plan(&name, &netres).unwrap().expect("routed");
    nft::apply(&[desired]).expect("nft apply");

    // Masquerade: the outside host sees the host's address, not the container's.
    let _outside_server = outside.spawn(&["python3", "-c", SERVER, "9000"]);
    assert_eq!(fetch(&ct, &far4, 9000), host4, "container → outside is not masqueraded");

    // Publish: outside → host port → container port 80, IPv4 and IPv6; the container
    // sees the real client.
    let _ct_server = ct.spawn(&["python3", "-c", SERVER, "80"]);
    assert_eq!(fetch(&outside, &host4, published), far4, "IPv4 publish");
    assert_eq!(fetch(&outside, &host6, published), far6, "IPv6 publish");

    // From the host itself through loopback: DNAT in `output`, route_localnet, and the
    // loopback masquerade make the container see a host address it can answer.
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect(("127.0.0.1", published)) {
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                s.read_to_string(&mut line).expect("read");
                break;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("127.0.0.1:{published}: {e}"),
        }
    }
    // The masquerade picks a global-scope host address (169.254.0.1 is link scope).
    let seen = line.trim().to_string();
    let host_addrs = json(&["ip", "-j", "-4", "addr"]);
    let is_host_addr = host_addrs
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["addr_info"].as_array().unwrap().iter())
        .any(|a| a["local"] == seen.as_str());
    assert!(is_host_addr && seen != "127.0.0.1", "loopback publish: container saw {seen:?}");

    // Without the table, the outside host can no longer reach the container's port.
    nft::apply(&[]).expect("nft clear");
    let out = outside.run(&["python3", "-c", "import socket,sys\ntry:\n socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1)\nexcept OSError: sys.exit(3)", &host4, &published.to_string()]);
    assert_eq!(out.status.code(), Some(3), "port still published after the table was removed");

    net::teardown(&name, &netres).expect("teardown");
    let _ = std::io::stdout().flush();
}

#[test]
fn repeated_setup_and_teardown_leave_nothing() {
    require_host!();
    let name = format!("t{}y", pid());
    let veth = host_ifname(&name);
    let _guard = Link(veth.clone());
    let netres = network(13, false);
    let (v4, v6) = (addr(&netres.ipv4), addr(&netres.ipv6));
    let ns = netns("y");
    let nsfile = ns.file();
    let start = Instant::now();
    for _ in 0..20 {
        net::setup(&name, &netres, nsfile.as_fd()).expect("setup");
        net::teardown(&name, &netres).expect("teardown");
    }
    eprintln!("20 setup+teardown cycles: {:?}", start.elapsed());
    assert!(host_state(&veth, &[&v4, &v6]).is_empty());
    assert_eq!(ns.json(&["ip", "-j", "link"]).as_array().unwrap().len(), 1);
}
