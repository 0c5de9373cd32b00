//! Shared harness of the end-to-end tests that build real Debian containers.
//!
//! - One state root per test binary (a temp dir), destroyed container by container.
//! - One layer cache for all of them: `CONTAINER_TEST_CACHE`, default
//!   `/var/tmp/container-test-cache`, so the debootstrap base and the apt downloads are
//!   made once and shared (on CI: once per run; on a developer machine: kept).
//! - Addresses: each binary takes `100.75.<slice>.0/24` and
//!   `fd63:6f6e:7461:696e:75:<slice>::/96` with its own `slice`, so binaries and
//!   other suites never collide. Traffic goes only to these containers and to
//!   namespaces the tests make.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod tier;

pub fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("cte2e").tempdir().expect("tempdir").keep();
        // Statics are never dropped: remove the root when the test process exits
        // (each test has destroyed its containers by then).
        extern "C" fn remove_root() {
            if let Some(r) = ROOT.get() {
                let _ = std::fs::remove_dir_all(r);
            }
        }
        // SAFETY: registers a plain function without arguments.
        unsafe { libc::atexit(remove_root) };
        dir
    })
}

pub fn cache() -> PathBuf {
    std::env::var_os("CONTAINER_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/container-test-cache"))
}

/// This binary's slice of the test address space (`salt` tells binaries apart when
/// they run in one process id range; the pid separates concurrent runs).
pub fn slice(salt: u32) -> u32 {
    (std::process::id() * 7 + salt * 31) % 250 + 1
}

pub fn v4(salt: u32, n: u32) -> String {
    format!("100.75.{}.{n}", slice(salt))
}

pub fn v6(salt: u32, n: u32) -> String {
    format!("fd63:6f6e:7461:696e:75:{:x}::{n:x}", slice(salt))
}

pub fn container() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_container"));
    c.arg("--root").arg(root()).arg("--cache").arg(cache()).env("NO_COLOR", "1").env_remove("CONTAINER_TEST_CRASH");
    c
}

pub fn run(args: &[&str]) -> Output {
    container().args(args).stdin(Stdio::null()).output().expect("run container")
}

pub fn text(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.len() > 6000 {
        format!("…{}", &s[s.len() - 6000..])
    } else {
        s.into_owned()
    }
}

/// The stdout of `out`, which must have succeeded (`what` names it otherwise).
#[track_caller]
pub fn stdout_of(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[track_caller]
pub fn ok(args: &[&str]) -> String {
    stdout_of(&format!("container {args:?}"), run(args))
}

/// Run a host program; its output.
pub fn host(argv: &[&str]) -> Output {
    Command::new(argv[0]).args(&argv[1..]).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

/// Run a host program that must succeed; its stdout.
#[track_caller]
pub fn host_ok(argv: &[&str]) -> String {
    stdout_of(&format!("{argv:?}"), host(argv))
}

/// A container of a test, destroyed with its volumes when dropped.
pub struct Ct {
    pub name: String,
    pub dir: tempfile::TempDir,
}

impl Ct {
    /// A container named `name` from spec text `body` (everything but `name`).
    pub fn new(name: &str, body: &str) -> Ct {
        let ct = Ct { name: name.to_string(), dir: tempfile::tempdir().expect("tempdir") };
        ct.write(body);
        ct
    }

    /// A shipped spec (path relative to the repository) renamed to `name`, with its
    /// "auto" addresses replaced by `ipv4`/`ipv6`.
    pub fn shipped(path: &str, name: &str, ipv4: &str, ipv6: &str) -> Ct {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect("read spec");
        let body = shipped_body(&text, ipv4, ipv6);
        Ct::new(name, &body)
    }

    pub fn spec(&self) -> PathBuf {
        self.dir.path().join("spec.toml")
    }

    /// Replace the spec (keeping the name).
    pub fn write(&self, body: &str) {
        std::fs::write(self.spec(), format!("name = \"{}\"\n{body}", self.name)).expect("write spec");
    }

    pub fn apply(&self) -> Output {
        container().arg("apply").arg(self.spec()).stdin(Stdio::null()).output().expect("apply")
    }

    #[track_caller]
    pub fn apply_ok(&self) -> String {
        let out = self.apply();
        assert!(
            out.status.success(),
            "apply {} failed ({}):\nstdout: {}\nstderr: {}\nlogs: {}",
            self.name,
            out.status,
            text(&out.stdout),
            text(&out.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn logs(&self) -> String {
        let out = run(&["logs", &self.name]);
        let sup = std::fs::read_to_string(self.dirs().join("run/supervisor.log")).unwrap_or_default();
        format!("{}\n--- supervisor.log\n{}", text(&out.stdout), text(sup.as_bytes()))
    }

    pub fn exec(&self, argv: &[&str]) -> Output {
        container().args(["exec", &self.name, "--"]).args(argv).stdin(Stdio::null()).output().expect("exec")
    }

    #[track_caller]
    pub fn exec_ok(&self, argv: &[&str]) -> String {
        stdout_of(&format!("exec {argv:?} in {}", self.name), self.exec(argv))
    }

    pub fn status(&self) -> Value {
        serde_json::from_str(&ok(&["status", &self.name, "--json"])).expect("status json")
    }

    pub fn service_pid(&self, svc: &str) -> i64 {
        self.status()["status"]["services"][svc]["pid"].as_i64().unwrap_or_else(|| panic!("no pid for {svc}"))
    }

    pub fn dirs(&self) -> PathBuf {
        root().join("containers").join(&self.name)
    }

    pub fn volume(&self, name: &str) -> PathBuf {
        self.dirs().join("volumes").join(name)
    }

    /// The value of a generated secret.
    pub fn secret(&self, name: &str) -> String {
        std::fs::read_to_string(self.dirs().join("secrets").join(name)).unwrap_or_else(|e| panic!("secret {name}: {e}"))
    }
}

impl Drop for Ct {
    fn drop(&mut self) {
        let _ = run(&["destroy", &self.name, "--volumes"]);
    }
}

/// A shipped spec's text without its top-level `name` line (the one before the first
/// table; `name` keys inside tables stay), with "auto" addresses replaced.
pub fn shipped_body(text: &str, ipv4: &str, ipv6: &str) -> String {
    let mut top = true;
    let mut out = Vec::new();
    for l in text.lines() {
        let t = l.trim_start();
        if t.starts_with('[') {
            top = false;
        }
        if top && t.starts_with("name =") {
            continue;
        }
        out.push(if t.starts_with("ipv4 = \"auto\"") {
            format!("ipv4 = \"{ipv4}\"")
        } else if t.starts_with("ipv6 = \"auto\"") {
            format!("ipv6 = \"{ipv6}\"")
        } else {
            l.to_string()
        });
    }
    out.join("\n")
}

/// Poll `f` until it returns Some, for up to `secs`.
pub fn eventually<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
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
