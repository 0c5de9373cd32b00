//! The real `container` binary, as the end-to-end and lifecycle suites drive it.
//!
//! - One state root per test binary (a temp dir, removed when the binary exits),
//!   destroyed container by container.
//! - One layer cache for all of them: `CONTAINER_TEST_CACHE`, default
//!   `/var/tmp/container-test-cache`, so the debootstrap base and the apt downloads are
//!   made once and shared (on CI: once per run; on a developer machine: kept).
//!
//! Both are made on first use: a gated test reaches them only after its
//! `require_host!()` / `require_e2e!()`.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// This test binary's state root (`--root`), shared by its tests.
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

/// The name container `name`'s host objects (cgroups, veth) are derived from under
/// this binary's root (`StateRoot::host_key`: the root is folded in).
pub fn host_key(name: &str) -> String {
    container::runtime::layout::StateRoot::new(root()).host_key(name)
}

/// The layer cache shared by every suite and run (`--cache`).
pub fn cache() -> PathBuf {
    std::env::var_os("CONTAINER_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/container-test-cache"))
}

/// The `container` binary on this binary's root and the shared cache.
pub fn container() -> Command {
    container_on(root())
}

/// The `container` binary on state root `root` and the shared cache, for suites that
/// keep roots of their own (two roots side by side, a fresh root's modes).
pub fn container_on(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_container"));
    c.arg("--root").arg(root).arg("--cache").arg(cache()).env("NO_COLOR", "1").env_remove("CONTAINER_TEST_CRASH");
    c
}

/// `container` on a throwaway state root `root` with an empty layer cache inside it,
/// run from the repository (relative spec paths), without colour: for the suites
/// that never start a container (nothing here needs root or touches the host).
pub fn isolated(root: &Path) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("container").expect("the container binary");
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CONTAINER_ROOT", root)
        .env("CONTAINER_CACHE", root.join("cache"))
        .env("NO_COLOR", "1")
        .env_remove("CONTAINER_TEST_CRASH");
    c
}

/// `container ARGS` without stdin; its output.
pub fn run(args: &[&str]) -> Output {
    container().args(args).stdin(Stdio::null()).output().expect("run container")
}

/// Output as text, its last 6000 bytes when longer (failure messages stay readable).
pub fn text(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.len() > 6000 {
        let cut = (s.len() - 6000..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        format!("…{}", &s[cut..])
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

/// `container ARGS`, which must succeed; its stdout.
#[track_caller]
pub fn ok(args: &[&str]) -> String {
    stdout_of(&format!("container {args:?}"), run(args))
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
        let body = shipped_body(&repo_file(path), ipv4, ipv6);
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
        let sup = std::fs::read_to_string(self.dirs().join("supervisor.log")).unwrap_or_default();
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

    /// The host pid of the container's PID 1.
    pub fn pid1(&self) -> i64 {
        self.status()["pid"].as_i64().expect("running")
    }

    pub fn service_pid(&self, svc: &str) -> i64 {
        self.status()["status"]["services"][svc]["pid"].as_i64().unwrap_or_else(|| panic!("no pid for {svc}"))
    }

    pub fn dirs(&self) -> PathBuf {
        root().join("containers").join(&self.name)
    }

    /// Its cgroups' name under `<hierarchy>/container/` ([`host_key`]).
    pub fn key(&self) -> String {
        host_key(&self.name)
    }

    /// The host end of its veth.
    pub fn veth(&self) -> String {
        container::exec::net::host_ifname(&self.key())
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

/// A file of the repository (a shipped spec, a fixture), by its relative path.
#[track_caller]
pub fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
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
