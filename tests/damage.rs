//! Damage has a way out: a damaged `state.json` or `pool.json` gets an error naming
//! the file and what to do (or, for the pool, a rebuild from the containers'
//! states), `destroy` works on a damaged container, and a `destroy` killed at any of
//! its steps is finished by the next one.
//!
//! Outcomes only (exit codes, processes, links, rules, files), never progress text.
//! The error-message tests need no root; the rest are host tier (`require_host!`),
//! each on a state root of its own, with this suite's addresses (salt 113).

mod support;
use container::runtime::layout::StateRoot;
use container::runtime::CrashPoint;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use support::*;

const SALT: u32 = 113;

fn name(tag: &str) -> String {
    format!("dm{}{tag}", slice(SALT))
}

fn web(n: u32) -> String {
    format!(
        r#"
[network]
ipv4 = "{}"
ipv6 = "{}"
nat = true

[[files]]
path = "/srv/www/index.html"
content = "damage"

[processes.web]
command = ["/usr/bin/python3", "-m", "http.server", "8080", "--bind", "::", "--directory", "/srv/www"]
user = "nobody"
ready = {{ tcp = 8080 }}

[[mounts]]
target = "/data"
type = "volume"
"#,
        v4(SALT, n),
        v6(SALT, n)
    )
}

/// Half of `path`'s bytes: a torn write.
fn truncate(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
}

/// What of container `name` (PID 1 `pid`, address `n`) is left on the host and in
/// its folder; empty when it is gone for good (volumes and secrets may stay).
fn left(root: &OwnRoot, name: &str, pid: i32, n: u32) -> Vec<String> {
    let mut out = Vec::new();
    if container::exec::process::proc_stat(pid).is_some_and(|(_, s)| s != 'Z') {
        out.push(format!("PID 1 {pid} runs"));
    }
    let veth = container::exec::net::host_ifname(&root.key(name));
    if host(&["ip", "link", "show", "dev", &veth]).status.success() {
        out.push(format!("veth {veth}"));
    }
    for fam in ["-4", "-6"] {
        let routes = String::from_utf8_lossy(&host(&["ip", fam, "route", "show", "table", "all"]).stdout).into_owned();
        for a in [v4(SALT, n), v6(SALT, n)] {
            out.extend(routes.lines().filter(|l| l.split_whitespace().next() == Some(a.as_str())).map(str::to_string));
        }
    }
    let table = StateRoot::new(root.path()).nft_table();
    let rules = String::from_utf8_lossy(&host(&["nft", "list", "table", "inet", &table]).stdout).into_owned();
    out.extend(rules.lines().filter(|l| l.contains(&v4(SALT, n))).map(|l| format!("rule {}", l.trim())));
    let cg = format!("/sys/fs/cgroup/container/{}", root.key(name));
    if Path::new(&cg).exists() {
        out.push(cg);
    }
    let dir = root.dirs(name);
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if !["volumes", "secrets", ".lock"].contains(&n.as_str()) {
            out.push(format!("{}/{n}", dir.display()));
        }
    }
    let listed = root.ok(&["list", "--json"]);
    if listed.contains(&format!("\"{name}\"")) {
        out.push("listed".into());
    }
    out
}

// ---- messages (no root) -------------------------------------------------------

#[test]
fn a_damaged_state_json_names_the_file_and_says_to_destroy() {
    let dir = tempfile::tempdir().unwrap();
    let ct = "dmbroken";
    let folder = dir.path().join("containers").join(ct);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("state.json"), b"{\"name\": \"dmbro").unwrap();
    let state = folder.join("state.json");
    for args in [&["start", ct][..], &["stop", ct], &["restart", ct]] {
        let out = isolated(dir.path()).args(args).output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(&state.display().to_string()), "{args:?} does not name the file: {err}");
        assert!(err.contains(&format!("container destroy {ct}")), "{args:?} does not say what to do: {err}");
    }
    // `plan` of its spec says the same.
    let spec = dir.path().join("spec.toml");
    std::fs::write(&spec, format!("name = \"{ct}\"\nbase = \"host\"\n[network]\nmode = \"none\"\n")).unwrap();
    let out = isolated(dir.path()).arg("plan").arg(&spec).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("state.json") && err.contains(&format!("container destroy {ct}")), "{err}");
}

#[test]
fn a_damaged_pool_json_is_rebuilt_for_plan_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.toml");
    std::fs::write(&spec, "name = \"dmpool\"\nbase = \"host\"\n[network]\nipv4 = \"auto\"\n").unwrap();
    std::fs::write(dir.path().join("pool.json"), b"{\"ipv4\": {\"x\": ").unwrap();
    let out = isolated(dir.path()).arg("plan").arg(&spec).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "plan with a damaged pool: {err}");
    assert!(err.contains("pool.json") && err.contains("rebuilt"), "no warning naming pool.json: {err}");
}

// ---- destroy always works (host) ------------------------------------------------

#[test]
fn destroy_removes_a_running_container_whose_state_json_is_damaged() {
    require_host!();
    let mut root = OwnRoot::new();
    let ct = name("state");
    root.apply(&ct, &web(1));
    let pid = root.run_info(&ct).expect("running").pid;
    truncate(&root.dirs(&ct).join("state.json"));
    let out = root.cmd(&["stop", &ct]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("state.json"), "{}", text(&out.stderr));
    let out = root.cmd(&["destroy", &ct]);
    assert!(out.status.success(), "destroy of a damaged container failed: {}", text(&out.stderr));
    assert_eq!(left(&root, &ct, pid, 1), Vec::<String>::new(), "destroy left these");
    assert!(root.dirs(&ct).join("volumes").join("data").is_dir(), "volumes are kept without --volumes");
    root.ok(&["destroy", &ct, "--volumes"]);
    assert!(!root.dirs(&ct).exists());
}

#[test]
fn a_destroy_killed_at_any_step_is_finished_by_the_next() {
    require_host!();
    let mut root = OwnRoot::new();
    for (i, point) in CrashPoint::DESTROY.iter().enumerate() {
        let ct = name(&format!("kill{i}"));
        let n = 10 + i as u32;
        root.apply(&ct, &web(n));
        let pid = root.run_info(&ct).expect("running").pid;
        let out = container_on(root.path())
            .args(["destroy", &ct])
            .env("CONTAINER_TEST_CRASH", point.name())
            .output()
            .unwrap();
        assert_eq!(out.status.signal(), Some(9), "destroy did not crash at {point}: {}", text(&out.stderr));
        assert!(!left(&root, &ct, pid, n).is_empty(), "nothing left after a crash at {point}?");
        let out = root.cmd(&["destroy", &ct]);
        assert!(out.status.success(), "second destroy after a crash at {point}: {}", text(&out.stderr));
        assert_eq!(left(&root, &ct, pid, n), Vec::<String>::new(), "left after a crash at {point} and a destroy");
        // Its addresses are free again: a new container takes them.
        let again = name(&format!("again{i}"));
        root.apply(&again, &web(n));
        root.ok(&["destroy", &again, "--volumes"]);
        root.ok(&["destroy", &ct, "--volumes"]);
    }
}

#[test]
fn a_damaged_pool_json_is_rebuilt_from_the_states_and_apply_and_destroy_work() {
    require_host!();
    let mut root = OwnRoot::new();
    let (a, b) = (name("poola"), name("poolb"));
    root.apply(&a, &web(20));
    let pool = root.path().join("pool.json");
    truncate(&pool);
    let out = root.apply_out(&b, &web(21));
    assert!(out.status.success(), "apply with a damaged pool.json: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("pool.json"), "no warning naming pool.json: {}", text(&out.stderr));
    let rebuilt: serde_json::Value = serde_json::from_slice(&std::fs::read(&pool).unwrap()).expect("pool.json anew");
    assert_eq!(rebuilt["ipv4"][&a], v4(SALT, 20), "{rebuilt}");
    assert_eq!(rebuilt["ipv4"][&b], v4(SALT, 21), "{rebuilt}");
    std::fs::write(&pool, b"garbage").unwrap();
    let pid = root.run_info(&a).expect("running").pid;
    let out = root.cmd(&["destroy", &a]);
    assert!(out.status.success(), "destroy with a damaged pool.json: {}", text(&out.stderr));
    assert_eq!(left(&root, &a, pid, 20), Vec::<String>::new());
    let pool: serde_json::Value = serde_json::from_slice(&std::fs::read(&pool).unwrap()).expect("pool.json anew");
    assert!(pool["ipv4"].get(&a).is_none() && pool["ipv4"][&b] == v4(SALT, 21), "{pool}");
}
