//! Who on the host may read what the tool keeps: host root only.
//!
//! The state root, `containers/`, each container's folder, its `files/` and
//! `volumes/`, and the layer cache are 0700; state files are 0600. A rendered file
//! keeps the mode the spec gives it (that is what the container sees through its bind
//! mount), but no host user other than root reaches it: the attack is host user
//! `nobody` trying to read the state, the secret and the rendered file that holds it
//! (`setpriv` to uid/gid 65534, no groups), which must fail, while the container's
//! own service, running as its `nobody`, still serves the file (rendered by a hook,
//! the way a module renders a password into a config file).
//!
//! Host tier (`require_host!`) but for the cache test, which needs no root.

mod support;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use support::*;

/// This suite's salt in block 75 (see `support::addr`).
const SALT: u32 = 61;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o7777
}

/// `cat FILE` as host user nobody (uid/gid 65534, no supplementary groups).
fn cat_as_nobody(file: &Path) -> Output {
    Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups", "cat"])
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .expect("setpriv")
}

/// `container` on a state root of its own that does not exist yet (so the test sees
/// the modes the tool gives the folders it creates), with the shared layer cache.
struct Fresh {
    tmp: tempfile::TempDir,
}

impl Fresh {
    fn root(&self) -> PathBuf {
        self.tmp.path().join("state")
    }
    fn run(&self, args: &[&str]) -> Output {
        cli::container_on(&self.root()).args(args).stdin(Stdio::null()).output().expect("run container")
    }
}

impl Drop for Fresh {
    fn drop(&mut self) {
        let _ = self.run(&["destroy", "perms", "--volumes"]);
    }
}

#[test]
fn nobody_on_the_host_reads_no_state_secret_or_rendered_file() {
    require_host!();
    let tmp = tempfile::tempdir().unwrap();
    // The temp folder itself is 0700: open it, so only the tool's own modes count.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let f = Fresh { tmp };
    let spec = f.tmp.path().join("perms.toml");
    let (v4, v6) = (addr::v4(SALT, 2), addr::v6(SALT, 2));
    std::fs::write(
        &spec,
        format!(
            r#"name = "perms"
base = "host"

[network]
ipv4 = "{v4}"
ipv6 = "{v6}"

[[mounts]]
target = "/data"
type = "volume"

# A hook renders the secret into a file the service (the container's nobody) reads.
[[hooks]]
inline = '''
fn on_plan(plan) {{
    plan.add_file("/srv/www/index.html", ["pw=", secret("perms-pw"), "\n"], "0644");
    plan
}}
'''

[processes.web]
command = ["/usr/bin/python3", "-m", "http.server", "8080", "--bind", "::", "--directory", "/srv/www"]
user = "nobody"
env = {{ TOKEN = "in-clear" }}
ready = {{ tcp = 8080 }}
"#
        ),
    )
    .unwrap();
    let out = f.run(&["apply", spec.to_str().unwrap()]);
    assert!(out.status.success(), "apply: {}\n{}", text(&out.stdout), text(&out.stderr));

    let root = f.root();
    let dirs = root.join("containers/perms");
    let secret = dirs.join("secrets/perms-pw");
    let rendered = dirs.join("files/srv/www/index.html");
    let pw = std::fs::read_to_string(&secret).expect("the secret");
    assert!(std::fs::read_to_string(&rendered).unwrap().contains(pw.trim()), "the file holds the secret");

    let want: [(PathBuf, u32); 10] = [
        (root.clone(), 0o700),
        (root.join("containers"), 0o700),
        (dirs.clone(), 0o700),
        (dirs.join("files"), 0o700),
        (dirs.join("volumes"), 0o700),
        (dirs.join("secrets"), 0o700),
        (dirs.join("state.json"), 0o600),
        (dirs.join("supervisor.json"), 0o600),
        (dirs.join("supervisor.log"), 0o600),
        (root.join("pool.json"), 0o600),
    ];
    let wrong: Vec<String> = want
        .iter()
        .filter(|(p, m)| mode(p) != *m)
        .map(|(p, m)| format!("{} is {:04o}, want {m:04o}", p.display(), mode(p)))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
    // The spec's mode is what the container sees (the same inode).
    assert_eq!(mode(&rendered), 0o644);

    for file in [
        dirs.join("state.json"),
        secret.clone(),
        rendered.clone(),
        dirs.join("supervisor.json"),
        dirs.join("supervisor.log"),
    ] {
        let out = cat_as_nobody(&file);
        assert!(
            !out.status.success() && out.stdout.is_empty(),
            "host user nobody read {}: {}",
            file.display(),
            text(&out.stdout)
        );
        assert!(text(&out.stderr).contains("Permission denied"), "{}: {}", file.display(), text(&out.stderr));
    }

    // The container's service (its own `nobody`) still reads the file.
    let page = support::host::eventually("the page", 10, || try_get_page(&v4));
    assert!(page.contains(pw.trim()), "the service does not serve the rendered file: {page}");
}

fn try_get_page(v4: &str) -> Option<String> {
    support::net::try_get(v4, 8080).ok().filter(|r| r.starts_with("HTTP/1.0 200"))
}

#[test]
fn a_new_layer_cache_is_host_roots_alone() {
    // Unit tier: `gc` takes the cache's lock, which creates the cache.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cache = tmp.path().join("cache");
    let out = Command::new(env!("CARGO_BIN_EXE_container"))
        .arg("--root")
        .arg(tmp.path().join("state"))
        .arg("--cache")
        .arg(&cache)
        .args(["gc", "--dry-run"])
        .output()
        .expect("run container");
    assert!(out.status.success(), "gc: {}", text(&out.stderr));
    assert_eq!(mode(&cache), 0o700, "{} is {:04o}", cache.display(), mode(&cache));
}
