//! The Debian builder end to end, as root: real debootstrap, real apt, the shared
//! layer cache (see tests/support), `build`, `plan`'s layer line, `images` and `gc`.
//!
//! End-to-end tier (`require_e2e!`: downloads from Debian's archive); the two failure
//! tests download nothing and are host tier (root, and they write to the shared cache).

mod support;
use support::*;

const SALT: u32 = 1;

/// Layer ids `container build` names ("NAME: layers pkg-… on base-… (built|reused)").
fn built_ids(out: &str) -> Vec<String> {
    out.split_whitespace().filter(|w| w.starts_with("pkg-") || w.starts_with("base-")).map(str::to_string).collect()
}

fn spec(packages: &str) -> String {
    format!(
        "base = \"debian:trixie\"\npackages = [{packages}]\n[network]\nmode = \"none\"\n\
         [processes.main]\ncommand = [\"/bin/sleep\", \"infinity\"]\n"
    )
}

#[test]
fn layers_are_built_once_reused_and_collected_when_unused() {
    require_e2e!();
    let a = Ct::new(&format!("b{}a", slice(SALT)), &spec("\"netcat-openbsd\""));
    a.apply_ok();
    // The root is the Debian layers, read-only; the package is there.
    assert!(a.exec_ok(&["cat", "/etc/debian_version"]).starts_with("13."));
    a.exec_ok(&["sh", "-c", "command -v nc"]);
    // The base's apt sources: the suite with its updates and its security fixes.
    let sources = a.exec_ok(&["cat", "/etc/apt/sources.list.d/debian.sources"]);
    for want in [
        "URIs: http://deb.debian.org/debian\n",
        "Suites: trixie trixie-updates\n",
        "URIs: http://deb.debian.org/debian-security\n",
        "Suites: trixie-security\n",
    ] {
        assert!(sources.contains(want), "no `{}` in the sources: {sources}", want.trim());
    }
    assert!(!a.exec(&["test", "-e", "/etc/apt/sources.list"]).status.success(), "debootstrap's `main` only list stays");
    let touch = a.exec(&["touch", "/usr/x"]);
    assert!(!touch.status.success() && text(&touch.stderr).contains("Read-only"), "root must be read-only");
    a.exec_ok(&["touch", "/tmp/x", "/run/x"]);
    let plan = run(&["plan", a.spec().to_str().unwrap()]);
    assert!(text(&plan.stdout).contains("layer: reuse pkg-"), "{}", text(&plan.stdout));

    // A second spec on the same base: the base and the downloaded packages are reused.
    let b = Ct::new(&format!("b{}b", slice(SALT)), &spec("\"netcat-openbsd\", \"less\""));
    let first = ok(&["build", b.spec().to_str().unwrap()]);
    let ids = built_ids(&first);
    assert_eq!(ids.len(), 2, "{first}");
    let (pkg, base) = (&ids[0], &ids[1]);
    // apt-get update in the package layer read all three suites.
    let lists: Vec<String> = std::fs::read_dir(cache().join("apt/lists").join(base))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for suite in ["trixie-security", "trixie-updates"] {
        assert!(
            lists.iter().any(|l| l.contains(&format!("_{suite}_")) && l.ends_with("Packages")),
            "{suite}: {lists:?}"
        );
    }
    // Built now or by an earlier run: remove it, to watch a build of it reuse things.
    std::fs::remove_dir_all(cache().join("layers").join(pkg)).unwrap();
    let plan = run(&["plan", b.spec().to_str().unwrap()]);
    assert!(text(&plan.stdout).contains(&format!("layer: rebuild {pkg}")), "{}", text(&plan.stdout));
    let out = run(&["build", b.spec().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("base {base} (debian:trixie): reuse")), "{err}");
    assert!(err.contains("build [1/4] apt-get update"), "plain progress lines off a terminal: {err}");
    assert!(err.contains("build [2/4] apt-get upgrade"), "the base's packages get the fixes: {err}");
    let log = std::fs::read_to_string(cache().join("logs").join(format!("{pkg}.log"))).unwrap();
    assert!(log.contains(&format!("# base {base} (debian:trixie): reused")), "{log}");
    let line = log.lines().find(|l| l.starts_with("# apt: ")).unwrap_or_else(|| panic!("no apt line: {log}"));
    let from_cache: u32 = line.split(": ").nth(2).and_then(|s| s.split(' ').next()?.parse().ok()).unwrap();
    assert!(from_cache >= 1, "netcat's .deb comes from the shared cache: {line}");
    let fetched = log.lines().any(|l| l.starts_with("Get:") && l.contains(" netcat-openbsd "));
    assert!(!fetched, "netcat was downloaded again: {log}");

    // images: sizes and users.
    let images = ok(&["images", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&images).unwrap();
    let row = |id: &str| rows.as_array().unwrap().iter().find(|r| r["id"] == id).cloned();
    let a_pkg = built_ids(&ok(&["build", a.spec().to_str().unwrap()]))[0].clone();
    let a_row = row(&a_pkg).expect("a's layer listed");
    assert!(a_row["used_by"].as_array().unwrap().iter().any(|u| u.as_str().unwrap().starts_with(&a.name)), "{a_row}");
    assert!(a_row["size"].as_u64().unwrap() > 0);
    assert_eq!(row(pkg).expect("b's layer listed")["used_by"], serde_json::json!([]));
    let human = ok(&["images"]);
    assert!(human.contains(&a_pkg) && human.contains("MiB"), "{human}");

    // gc removes the unused layer, never the one in use or its base.
    let gc = ok(&["gc"]);
    assert!(gc.contains(&format!("removed {pkg}")), "{gc}");
    assert!(!cache().join("layers").join(pkg).exists());
    assert!(cache().join("layers").join(&a_pkg).join("layer.json").exists(), "a layer in use was removed");
    assert!(cache().join("layers").join(base).join("layer.json").exists(), "the base in use was removed");
    // A stopped container still uses its layers.
    ok(&["stop", &a.name]);
    let gc = ok(&["gc", "--dry-run"]);
    assert!(!gc.contains(&a_pkg), "{gc}");
    ok(&["start", &a.name]);
    a.exec_ok(&["true"]);
}

#[test]
fn a_failed_build_leaves_no_layer_and_names_its_log() {
    require_e2e!();
    let c = Ct::new(&format!("b{}f", slice(SALT)), &spec("\"no-such-package-for-the-test\""));
    let out = c.apply();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("apt-get install") && err.contains("failed"), "{err}");
    let log = err.split("the build log is ").nth(1).and_then(|s| s.split_whitespace().next()).expect("log path");
    assert!(std::fs::read_to_string(log).unwrap().contains("Unable to locate package"), "log {log}");
    let leftovers: Vec<String> = std::fs::read_dir(cache().join("layers"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(leftovers.iter().all(|n| !log.contains(n.trim_end_matches(".partial"))), "{leftovers:?}");
    // Nothing was recorded for the container.
    assert!(!c.dirs().join("state.json").exists() && !c.dirs().join("pending.json").exists());
    assert!(!ok(&["list"]).contains(&c.name));
}

#[test]
fn a_base_that_cannot_be_bootstrapped_fails_cleanly() {
    require_host!();
    let c = Ct::new(
        &format!("b{}m", slice(SALT)),
        "base = \"debian:trixie\"\nmirror = \"file:///nonexistent/debian\"\n[network]\nmode = \"none\"\n",
    );
    let out = c.apply();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("debootstrap") && err.contains("the build log is"), "{err}");
    let id = err.split("building layer ").nth(1).and_then(|s| s.split_whitespace().next()).expect("layer id");
    assert!(!cache().join("layers").join(id).exists());
    assert!(!cache().join("layers").join(format!("{id}.partial")).exists());
}

#[test]
fn a_missing_debootstrap_is_named_with_its_install_command() {
    require_host!();
    // A base not in the cache (its own mirror), and a PATH without debootstrap.
    let c = Ct::new(
        &format!("b{}t", slice(SALT)),
        "base = \"debian:trixie\"\nmirror = \"file:///nonexistent/no-tool\"\n[network]\nmode = \"none\"\n",
    );
    let empty = tempfile::tempdir().unwrap();
    let out = container().env("PATH", empty.path()).arg("apply").arg(c.spec()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("`debootstrap` is not installed on this host") && err.contains("apt-get install -y debootstrap"),
        "{err}"
    );
    assert!(!c.dirs().join("state.json").exists() && !c.dirs().join("rootfs.json").exists());
}
