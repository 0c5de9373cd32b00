//! Network scenes a test makes and the clients that probe them. Traffic goes only to
//! these namespaces, the tests' own containers and loopback, on the suite's addresses
//! (see `addr`).

use crate::support::host::{host, host_ok, Bg};
use serde_json::Value;
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// A host program's JSON output (`ip -j …`); an empty output is an empty array.
#[track_caller]
pub fn host_json(argv: &[&str]) -> Value {
    let s = host_ok(argv);
    if s.trim().is_empty() {
        return Value::Array(vec![]);
    }
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("{argv:?}: {e}: {s}"))
}

/// A network namespace of the test (`ip netns add`), removed when dropped, also when
/// the test fails; a routed one with its veth (and so its host routes).
pub struct Netns {
    pub name: String,
    veth: bool,
}

impl Netns {
    /// An empty namespace `name` (its loopback down), after removing a leftover of a
    /// crashed run with the same name.
    pub fn new(name: &str) -> Netns {
        let _ = host(&["ip", "netns", "del", name]);
        host_ok(&["ip", "netns", "add", name]);
        Netns { name: name.to_string(), veth: false }
    }

    /// A namespace linked to the host like a routed container: a veth pair (host end
    /// `name`, inside `eth0`) whose host end answers as 169.254.0.1 and fe80::1, and
    /// host routes to the namespace's addresses `v4s` / `v6s`.
    pub fn routed(name: &str, v4s: &[&str], v6s: &[&str]) -> Netns {
        let n = name;
        // Leftovers of a crashed run with the same slice.
        let _ = host(&["ip", "link", "del", n]);
        let mut ns = Netns::new(n);
        ns.veth = true;
        host_ok(&["ip", "link", "add", n, "type", "veth", "peer", "name", "eth0", "netns", n]);
        host_ok(&["ip", "-n", n, "link", "set", "lo", "up"]);
        host_ok(&["ip", "link", "set", n, "up"]);
        host_ok(&["ip", "-n", n, "link", "set", "eth0", "up"]);
        if !v4s.is_empty() {
            host_ok(&["ip", "addr", "add", "169.254.0.1/32", "dev", n]);
            for a in v4s {
                host_ok(&["ip", "-n", n, "addr", "add", &format!("{a}/32"), "dev", "eth0"]);
                host_ok(&["ip", "route", "add", &format!("{a}/32"), "dev", n]);
            }
            host_ok(&["ip", "-n", n, "route", "add", "169.254.0.1", "dev", "eth0"]);
            host_ok(&["ip", "-n", n, "route", "add", "default", "via", "169.254.0.1", "dev", "eth0", "src", v4s[0]]);
        }
        if !v6s.is_empty() {
            host_ok(&["ip", "addr", "add", "fe80::1/64", "dev", n, "nodad"]);
            for a in v6s {
                host_ok(&["ip", "-n", n, "addr", "add", &format!("{a}/128"), "dev", "eth0", "nodad"]);
                host_ok(&["ip", "-6", "route", "add", &format!("{a}/128"), "dev", n]);
            }
            host_ok(&["ip", "-n", n, "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0"]);
        }
        ns
    }

    /// The namespace file (for setns).
    pub fn file(&self) -> File {
        File::open(format!("/run/netns/{}", self.name)).expect("open netns")
    }

    /// `argv` inside the namespace, without stdin.
    pub fn cmd(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(argv).stdin(Stdio::null());
        c
    }

    /// Run `argv` inside the namespace; its output.
    pub fn run(&self, argv: &[&str]) -> Output {
        self.cmd(argv).output().expect("ip netns exec")
    }

    /// Run `argv` inside the namespace, which must succeed; its stdout.
    #[track_caller]
    pub fn ok(&self, argv: &[&str]) -> String {
        let out = self.run(argv);
        assert!(out.status.success(), "in {}: {argv:?} failed: {}", self.name, String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The JSON output of `argv` inside the namespace.
    #[track_caller]
    pub fn json(&self, argv: &[&str]) -> Value {
        serde_json::from_str(&self.ok(argv)).expect("json")
    }

    /// `argv` inside the namespace in the background (output discarded).
    pub fn spawn(&self, argv: &[&str]) -> Bg {
        Bg(self.cmd(argv).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.veth {
            let _ = host(&["ip", "link", "del", &self.name]);
        }
        let _ = host(&["ip", "netns", "del", &self.name]);
    }
}

/// A host interface deleted when dropped (scene links, and a container's host end in
/// case the code under test failed before tearing it down).
pub struct Link(pub String);

impl Drop for Link {
    fn drop(&mut self) {
        let _ = host(&["ip", "link", "del", &self.0]);
    }
}

/// One ping to `addr` from the host, waiting up to 3 s.
pub fn ping(addr: &str) -> bool {
    Command::new("ping")
        .args(["-c", "1", "-W", "3", addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `GET /` over HTTP/1.0 from the host: the whole response, or what failed.
pub fn try_get(host: &str, port: u16) -> Result<String, String> {
    let addr = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let sock = addr.parse().map_err(|e| format!("address {addr}: {e}"))?;
    let mut s =
        TcpStream::connect_timeout(&sock, Duration::from_secs(5)).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| format!("timeout {addr}: {e}"))?;
    write!(s, "GET / HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| format!("write {addr}: {e}"))?;
    let mut body = String::new();
    s.read_to_string(&mut body).map_err(|e| format!("read {addr}: {e}"))?;
    Ok(body)
}

/// `GET /` that must answer; the whole response.
#[track_caller]
pub fn http_get(host: &str, port: u16) -> String {
    try_get(host, port).unwrap_or_else(|e| panic!("{e}"))
}

/// HTTP through curl (status code and body), with a timeout.
pub fn curl(args: &[&str]) -> (u16, String) {
    let mut argv = vec!["curl", "-sS", "-m", "20", "-o", "-", "-w", "\n%{http_code}"];
    argv.extend_from_slice(args);
    let out = host(&argv);
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = s.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}
