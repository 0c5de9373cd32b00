//! Escape tests, network: attacks a compromised container would try against the host
//! and the other containers, done for real from inside a container (issue 10's
//! network fences).
//!
//! The attacker crafts packets with an AF_PACKET socket on its `eth0` (it needs
//! CAP_NET_RAW in its own network namespace, as container root has today and as any
//! module granted NET_RAW/NET_ADMIN has, e.g. tayga or tinc). If the container's
//! root may not open such a socket, the same script runs in the container's network
//! namespace from the host (`nsenter -n`): the fences under test are on the host
//! side, so they must hold against whatever a container's namespace can send.
//!
//! Traffic goes only to loopback and to this binary's containers, on its slice of
//! 100.75.0.0/16 and the project's ULA (salt 47); containers are named `esc-n-*`.

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{host, host_ok, ok, run, slice, text, v4, v6, Ct};

const SALT: u32 = 47;

/// Helpers shared by the attack scripts: checksums, headers, and sending a raw IP
/// packet out of `eth0` to the gateway's MAC address (so neither the container's
/// routing nor its source-address checks are involved).
const RAW: &str = r#"
import socket, struct, sys, time, random
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
def a6(x): return socket.inet_pton(socket.AF_INET6, x)
def pseudo(src, dst, proto, n):
    if ':' in src: return a6(src) + a6(dst) + struct.pack('!IxxxB', n, proto)
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, proto, n)
def ip(src, dst, proto, l4):
    if ':' in src:
        return struct.pack('!IHBB', 6 << 28, len(l4), proto, 64) + a6(src) + a6(dst) + l4
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(l4), random.randint(1, 65535), 0, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack('!H', csum(h)) + h[12:] + l4
def udp(src, dst, sport, dport, data):
    u = struct.pack('!HHHH', sport, dport, 8 + len(data), 0) + data
    c = csum(pseudo(src, dst, 17, len(u)) + u) or 0xffff
    return u[:6] + struct.pack('!H', c) + u[8:]
def tcp(src, dst, sport, dport, seq, ack, flags, data=b''):
    t = struct.pack('!HHIIBBHHH', sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0) + data
    return t[:16] + struct.pack('!H', csum(pseudo(src, dst, 6, len(t)) + t)) + t[18:]
def packet_socket(proto=0):
    try:
        return socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(proto))
    except PermissionError:
        print('NORAW', flush=True)
        sys.exit(3)
def send(s, mac, src, dst, proto, l4):
    et = 0x86dd if ':' in src else 0x0800
    s.sendto(ip(src, dst, proto, l4), ('eth0', et, 0, 0, bytes.fromhex(mac.replace(':', ''))))
"#;

/// argv: MAC DST4 DST6 PORT TAG=SRC...: one UDP datagram per TAG=SRC, payload TAG, to
/// DST4 or DST6 (by the family of SRC).
const SPOOF: &str = r#"
mac, dst4, dst6, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s = packet_socket()
for arg in sys.argv[5:]:
    tag, src = arg.split('=', 1)
    dst = dst6 if ':' in src else dst4
    send(s, mac, src, dst, 17, udp(src, dst, 40000, port, tag.encode()))
    print('SENT', tag, flush=True)
"#;

/// argv: MAC SRC DST PORT: a TCP handshake done by hand (SYN, then ACK and a request
/// once a SYN-ACK comes), printing SYNACK and DATA lines for what came back. The
/// container's kernel drops answers from 127.0.0.1 as martians without a RST, so a
/// server that answers sees a complete connection. First an ordinary datagram to the
/// gateway makes the host learn the container's MAC address: the host cannot ARP for
/// it with 127.0.0.1 as the sender (the container ignores that request), so without a
/// neighbour entry an answer from 127.0.0.1 would never leave the host.
const HANDSHAKE: &str = r#"
mac, src, dst, dport = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('169.254.0.1', 9))
time.sleep(0.3)
s = packet_socket()
r = packet_socket(0x0800)
r.bind(('eth0', 0x0800))
r.settimeout(0.2)
sport = random.randint(42000, 60000)
isn = random.randint(1, 1 << 30)
done = False
print('SENT', flush=True)
end = time.time() + 5
next_syn = 0
while time.time() < end:
    if not done and time.time() >= next_syn:
        send(s, mac, src, dst, 6, tcp(src, dst, sport, dport, isn, 0, 0x02))
        next_syn = time.time() + 1
    try:
        p = r.recv(4096)
    except socket.timeout:
        continue
    if len(p) < 40 or p[9] != 6 or socket.inet_ntoa(p[12:16]) != dst:
        continue
    t = p[(p[0] & 15) * 4:]
    sp, dp, seq, ack, off, fl = struct.unpack('!HHIIBB', t[:14])
    if sp != dport or dp != sport:
        continue
    body = t[(off >> 4) * 4:]
    if fl & 0x12 == 0x12 and not done:
        print('SYNACK', flush=True)
        done = True
        send(s, mac, src, dst, 6, tcp(src, dst, sport, dport, isn + 1, seq + 1, 0x10))
        req = b'GET / HTTP/1.0\r\n\r\n'
        send(s, mac, src, dst, 6, tcp(src, dst, sport, dport, isn + 1, seq + 1, 0x18, req))
    elif body:
        print('DATA', body[:200], flush=True)
"#;

/// Runs an attack script (RAW + `script`) in `ct` as its root; where that root may not
/// open a packet socket, in its network namespace from the host (see the header).
fn attack(ct: &Ct, script: &str, args: &[&str]) -> String {
    let code = format!("{RAW}{script}");
    let mut argv = vec!["python3", "-c", code.as_str()];
    argv.extend_from_slice(args);
    let out = ct.exec(&argv);
    let stdout = text(&out.stdout);
    if out.status.code() == Some(3) && stdout.contains("NORAW") {
        let pid = ct.status()["pid"].as_i64().expect("running").to_string();
        let mut host_argv = vec!["nsenter", "-t", pid.as_str(), "-n"];
        host_argv.extend_from_slice(&argv);
        return host_ok(&host_argv);
    }
    assert!(out.status.success(), "attack in {} failed: {}\n{stdout}\n{}", ct.name, out.status, text(&out.stderr));
    stdout
}

/// The MAC address of the host end of `ct`'s veth: the container's gateway.
fn gateway_mac(ct: &Ct) -> String {
    let veth = ct.veth();
    std::fs::read_to_string(format!("/sys/class/net/{veth}/address"))
        .unwrap_or_else(|e| panic!("{veth}: {e}"))
        .trim()
        .to_string()
}

fn port(k: u16) -> u16 {
    41000 + (slice(SALT) as u16) * 8 + k
}

fn sleeper(net: &str) -> String {
    format!("base = \"host\"\n[network]\n{net}\n[processes.main]\ncommand = [\"/bin/sleep\", \"infinity\"]\n")
}

fn addrs(n: u32) -> String {
    format!("ipv4 = \"{}\"\nipv6 = \"{}\"", v4(SALT, n), v6(SALT, n))
}

/// Logs every UDP datagram it gets on `port` (both families) as "SOURCE PAYLOAD" lines
/// to /data/got (a volume the test reads from the host).
fn udp_listener(n: u32, port: u16) -> String {
    let code = format!(
        "import socket\ns = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\ns.bind(('::', {port}))\n\
         f = open('/data/got', 'a')\nwhile True:\n    d, a = s.recvfrom(2000)\n    \
         src = a[0][7:] if a[0].startswith('::ffff:') else a[0]\n    \
         f.write(src + ' ' + d.decode(errors='replace') + '\\n')\n    f.flush()\n"
    );
    format!(
        "base = \"host\"\n[network]\n{}\n[[mounts]]\ntarget = \"/data\"\ntype = \"volume\"\n\
         [processes.listen]\ncommand = [\"/usr/bin/python3\", \"-c\", {code:?}]\n",
        addrs(n)
    )
}

/// A host process; killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---- source spoofing -------------------------------------------------------------

#[test]
fn a_container_cannot_send_with_another_containers_or_a_made_up_source_address() {
    require_host!();
    let (a, b, c) = (1, 2, 3);
    // The attacker routes two prefixes (as tayga does): those are its sources too.
    let s = slice(SALT);
    let (pfx4, pfx6) = (format!("100.75.{s}.128/28"), format!("fd63:6f6e:7461:696e:75:{s:x}:1:0/112"));
    let net = format!("{}\nprefixes = [\"{pfx4}\", \"{pfx6}\"]", addrs(a));
    let attacker = Ct::new("esc-n-sa", &sleeper(&net));
    let victim = Ct::new("esc-n-sb", &sleeper(&addrs(b)));
    let p = port(0);
    let target = Ct::new("esc-n-sc", &udp_listener(c, p));
    for ct in [&attacker, &victim, &target] {
        ct.apply_ok();
    }
    let mac = gateway_mac(&attacker);
    let got = target.volume("data").join("got");
    let (dst4, dst6) = (v4(SALT, c), v6(SALT, c));
    let packets = [
        format!("own4={}", v4(SALT, a)),
        format!("own6={}", v6(SALT, a)),
        format!("pfx4=100.75.{s}.129"),
        format!("pfx6=fd63:6f6e:7461:696e:75:{s:x}:1:5"),
        format!("spoof-b4={}", v4(SALT, b)),
        format!("spoof-b6={}", v6(SALT, b)),
        format!("spoof-x4={}", v4(SALT, 99)),
        format!("spoof-x6={}", v6(SALT, 99)),
    ];
    let mut args = vec![mac.as_str(), dst4.as_str(), dst6.as_str()];
    let ps = p.to_string();
    args.push(&ps);
    args.extend(packets.iter().map(String::as_str));
    // The datagrams from the attacker's own addresses and prefixes prove the path
    // works; resend until all arrived (the listener may still be starting).
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        let sent = attack(&attacker, SPOOF, &args);
        assert_eq!(sent.matches("SENT").count(), packets.len(), "{sent}");
        std::thread::sleep(Duration::from_millis(500));
        let log = std::fs::read_to_string(&got).unwrap_or_default();
        if [" own4", " own6", " pfx4", " pfx6"].iter().all(|t| log.contains(t)) {
            break log;
        }
        assert!(Instant::now() < deadline, "the attacker's legitimate datagrams never arrived: {log:?}");
    };
    std::thread::sleep(Duration::from_millis(500));
    let log = std::fs::read_to_string(&got).unwrap_or(log);
    assert!(log.contains(&format!("{} own4", v4(SALT, a))), "{log}");
    let own6: std::net::Ipv6Addr = v6(SALT, a).parse().expect("v6");
    assert!(log.contains(&format!("{own6} own6")), "{log}");
    let spoofed: Vec<&str> = log.lines().filter(|l| l.contains(" spoof-")).collect();
    assert!(spoofed.is_empty(), "spoofed datagrams reached the other container: {spoofed:?}");
}

// ---- host loopback ---------------------------------------------------------------

/// A host listener on 127.0.0.1:`port`, printing the peer of every connection it
/// accepts for `secs` seconds.
fn loopback_listener(port: u16, secs: u32) -> (Proc, BufReader<std::process::ChildStdout>) {
    let code = format!(
        "import socket, time\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', {port}))\ns.listen(8)\nprint('READY', flush=True)\ns.settimeout(0.2)\n\
         end = time.time() + {secs}\nwhile time.time() < end:\n    try:\n        c, a = s.accept()\n    \
         except socket.timeout:\n        continue\n    print('CONN', a[0], flush=True)\n    c.close()\nprint('END', flush=True)\n"
    );
    let mut child = Command::new("python3")
        .args(["-c", &code])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("listener output");
    assert_eq!(line.trim(), "READY", "listener did not start");
    (Proc(child), out)
}

#[test]
fn a_container_with_a_published_port_cannot_reach_a_host_service_on_127_0_0_1() {
    require_host!();
    let n = 10;
    // A published port makes net set route_localnet on the container's veth.
    let net = format!("{}\npublish = [\"{}:8080\"]", addrs(n), port(1));
    let attacker = Ct::new("esc-n-lo", &sleeper(&net));
    attacker.apply_ok();
    let veth = attacker.veth();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{veth}/route_localnet")).unwrap().trim(),
        "1",
        "the attack needs route_localnet on {veth}"
    );
    let p = port(2);
    let (_listener, mut out) = loopback_listener(p, 8);
    let mac = gateway_mac(&attacker);
    let got = attack(&attacker, HANDSHAKE, &[&mac, &v4(SALT, n), "127.0.0.1", &p.to_string()]);
    assert!(got.contains("SENT"), "{got}");
    // The host itself still reaches its own loopback service (the listener works).
    TcpStream::connect(("127.0.0.1", p)).expect("the host reaches its loopback listener");
    let mut seen = Vec::new();
    let mut line = String::new();
    while out.read_line(&mut line).unwrap_or(0) > 0 && !line.starts_with("END") {
        seen.push(line.trim().to_string());
        line.clear();
    }
    assert!(seen.contains(&"CONN 127.0.0.1".to_string()), "{seen:?}");
    let from_ct: Vec<&String> = seen.iter().filter(|l| l.contains(&v4(SALT, n))).collect();
    assert!(from_ct.is_empty(), "the loopback service accepted a connection from the container: {from_ct:?}");
    assert!(!got.contains("SYNACK"), "the host's loopback service answered the container: {got}");
}

/// The body of a server answering "hello from B" on 8080 (both families).
fn web(n: u32, publish: &str) -> String {
    format!(
        "base = \"host\"\n[network]\n{}\npublish = [{publish:?}]\n[[files]]\npath = \"/srv/www/index.html\"\n\
         content = \"hello from B\"\n[processes.web]\n\
         command = [\"/usr/bin/python3\", \"-m\", \"http.server\", \"8080\", \"--bind\", \"::\", \"--directory\", \"/srv/www\"]\n\
         user = \"nobody\"\nready = {{ tcp = 8080 }}\n",
        addrs(n)
    )
}

fn http_get(host: &str, port: u16) -> Result<String, String> {
    use std::io::{Read, Write};
    let addr = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let mut s = TcpStream::connect_timeout(&addr.parse().expect("addr"), Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    write!(s, "GET / HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| format!("write {addr}: {e}"))?;
    let mut body = String::new();
    s.read_to_string(&mut body).map_err(|e| format!("read {addr}: {e}"))?;
    Ok(body)
}

#[test]
fn a_port_published_on_127_0_0_1_is_reachable_from_the_host_only() {
    require_host!();
    let p = port(3);
    let server = Ct::new("esc-n-pb", &web(20, &format!("127.0.0.1:{p}:8080")));
    server.apply_ok();
    let attacker = Ct::new("esc-n-pa", &sleeper(&addrs(21)));
    attacker.apply_ok();
    let from_host = http_get("127.0.0.1", p);
    assert!(from_host.as_deref().is_ok_and(|b| b.contains("hello from B")), "the host: {from_host:?}");
    // Plain connections to the host's addresses as the container sees them.
    let connect = format!(
        "import socket\nfor h in ['169.254.0.1', 'fe80::1%eth0']:\n    try:\n        \
         socket.create_connection((h, {p}), timeout=3).close(); print('OPEN', h)\n    \
         except OSError as e:\n        print('CLOSED', h, e)\n"
    );
    let plain = attacker.exec_ok(&["python3", "-c", &connect]);
    assert!(!plain.contains("OPEN"), "{plain}");
    // The real attack: a SYN to 127.0.0.1:PORT handed to the gateway.
    let mac = gateway_mac(&attacker);
    let got = attack(&attacker, HANDSHAKE, &[&mac, &v4(SALT, 21), "127.0.0.1", &p.to_string()]);
    assert!(got.contains("SENT"), "{got}");
    assert!(!got.contains("SYNACK") && !got.contains("hello"), "another container reached 127.0.0.1:{p}: {got}");
    let again = http_get("127.0.0.1", p);
    assert!(again.as_deref().is_ok_and(|b| b.contains("hello from B")), "the host, afterwards: {again:?}");
}

// ---- prefix hijack ---------------------------------------------------------------

fn ping(addr: &str) -> bool {
    host(&["ping", "-c", "1", "-W", "3", addr]).status.success()
}

/// The main-table routes to `addr` (as `ip route` prints them).
fn routes_to(addr: &str) -> Vec<String> {
    let fam = if addr.contains(':') { "-6" } else { "-4" };
    text(&host(&["ip", fam, "-o", "route", "show", "table", "main"]).stdout)
        .lines()
        .filter(|l| l.split_whitespace().next().is_some_and(|d| d == addr || d.starts_with(&format!("{addr}/"))))
        .map(str::to_string)
        .collect()
}

/// What container `name` left on the host or in the state root.
fn traces(name: &str) -> Vec<String> {
    let veth = container::exec::net::host_ifname(&support::host_key(name));
    let mut out = Vec::new();
    if Path::new(&format!("/sys/class/net/{veth}")).exists() {
        out.push(format!("interface {veth}"));
    }
    for fam in ["-4", "-6"] {
        let routes = text(&host(&["ip", fam, "-o", "route", "show", "table", "all"]).stdout);
        out.extend(routes.lines().filter(|l| l.contains(&format!("dev {veth} "))).map(str::to_string));
    }
    let nft = text(&host(&["nft", "list", "ruleset"]).stdout);
    out.extend(nft.lines().filter(|l| l.contains(&format!("\"container:{name}\""))).map(str::to_string));
    let pool = std::fs::read_to_string(support::root().join("pool.json")).unwrap_or_default();
    if pool.contains(&format!("\"{name}\"")) {
        out.push(format!("pool.json holds {name}"));
    }
    let dirs = support::root().join("containers").join(name);
    for f in ["state.json", "pending.json", "run/run.json"] {
        if dirs.join(f).exists() {
            out.push(format!("{}", dirs.join(f).display()));
        }
    }
    out
}

#[test]
fn a_prefix_over_another_containers_address_is_refused_and_changes_nothing() {
    require_host!();
    let victim = Ct::new("esc-n-hv", &sleeper(&addrs(40)));
    victim.apply_ok();
    // As the kernel and the tool print it (RFC 5952).
    let canon = |a: String| a.parse::<std::net::IpAddr>().expect("address").to_string();
    let (va4, va6) = (v4(SALT, 40), canon(v6(SALT, 40)));
    let before = (routes_to(&va4), routes_to(&va6));
    assert!(before.0.len() == 1 && before.1.len() == 1, "{before:?}");
    let s = slice(SALT);
    // The victim's exact /32 and /128, and prefixes covering them.
    let hijacks = [
        format!("{va4}/32"),
        format!("100.75.{s}.32/28"),
        format!("{va6}/128"),
        format!("fd63:6f6e:7461:696e:75:{s:x}::/120"),
    ];
    for prefix in &hijacks {
        let hijacker = Ct::new("esc-n-hh", &sleeper(&format!("{}\nprefixes = [\"{prefix}\"]", addrs(41))));
        for cmd in ["plan", "apply"] {
            let out = run(&[cmd, hijacker.spec().to_str().unwrap()]);
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{cmd} with prefix {prefix} was not refused:\n{err}");
            eprintln!("{cmd} refused: {err}");
            assert!(err.contains(&victim.name), "{cmd}: the error does not name {}: {err}", victim.name);
            assert!(err.contains(prefix.as_str()), "{cmd}: the error does not name {prefix}: {err}");
        }
        assert_eq!(traces(&hijacker.name), Vec::<String>::new(), "the refused apply left traces");
        assert_eq!((routes_to(&va4), routes_to(&va6)), before, "the victim's routes changed");
        assert!(ping(&va4) && ping(&va6), "the victim is unreachable after a refused hijack of {prefix}");
    }
    // The victim itself cannot be given an address inside another container's prefix.
    let s4 = format!("100.75.{s}.64/28");
    let router = Ct::new("esc-n-hr", &sleeper(&format!("{}\nprefixes = [\"{s4}\"]", addrs(42))));
    router.apply_ok();
    let inside = Ct::new("esc-n-hi", &sleeper(&format!("ipv4 = \"100.75.{s}.70\"")));
    let out = inside.apply();
    assert_eq!(out.status.code(), Some(1), "an address inside {s4} was accepted");
    assert!(text(&out.stderr).contains(&router.name), "{}", text(&out.stderr));
    // Destroying a container with a prefix leaves every other container routed.
    ok(&["destroy", &router.name]);
    assert_eq!((routes_to(&va4), routes_to(&va6)), before, "the victim's routes changed");
    assert!(ping(&va4) && ping(&va6), "the victim is unreachable after destroying a router");
    victim.exec_ok(&["true"]);
}
