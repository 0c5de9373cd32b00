//! Volume folders a container rewrites, tried for real from inside (host tier: root,
//! real namespaces, the real CLI on a `base = "host"` container).
//!
//! A volume's folder on the host (`containers/<name>/volumes/<source>`) belongs to the
//! container: whatever is inside it may be a symlink of the container's choosing. With
//! nested volumes (`data` and `data/sub`) the inner one's folder lies inside the outer
//! one, so the container's root can replace it with a symlink to any host path. The
//! next start must refuse that volume with an error naming it, bind nothing of the
//! host, and create nothing where the symlink points. A swap after that check (while
//! the container starts) is refused by the sandbox itself, which opens each volume
//! beneath the volumes folder without following a symlink: tried in
//! `tests/exec_sandbox.rs` (`a_volume_swapped_for_a_symlink_while_the_sandbox_starts_is_never_bound`).
//!
//! Containers are named `esc-vol-*`; they have no network, so this file uses no
//! addresses.

mod support;

use support::*;

const MARKER: &str = "host-secret-5d20b9\n";

const NESTED: &str = r#"base = "host"
[network]
mode = "none"
[[mounts]]
target = "/srv/data"
type = "volume"
source = "data"
[[mounts]]
target = "/srv/inner"
type = "volume"
source = "data/sub/deep"
[[mounts]]
target = "/srv/top"
type = "volume"
source = "data/top"
[processes.main]
command = ["/bin/sh", "-c", "exec /bin/sleep infinity"]
"#;

/// The names in `dir`, sorted.
fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read the host folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_nested_volume_replaced_by_a_symlink_is_refused() {
    require_host!();
    let host = tempfile::Builder::new().prefix("ct-victim").tempdir().expect("tempdir");
    std::fs::write(host.path().join("hostfile"), MARKER).expect("write the host file");
    let before = listing(host.path());
    let ct = Ct::new("esc-vol-nested", NESTED);
    ct.apply_ok();

    // Inside, as the container's root: the folder on the way to an inner volume (in the
    // outer volume) becomes a symlink to the host folder; and, separately, an inner
    // volume's own folder (the last name) becomes one.
    let cases = [
        ("/srv/data/sub", "/srv/data/sub.old", "data/sub/deep", "/srv/inner"),
        ("/srv/data/top", "/srv/data/top.old", "data/top", "/srv/top"),
    ];
    for (link, old, volume, target) in cases {
        ct.exec_ok(&["sh", "-c", &format!("mv {link} {old} && ln -s {} {link}", host.path().display())]);
        let o = run(&["restart", &ct.name]);
        let all = format!("({})\nstdout: {}\nstderr: {}", o.status, text(&o.stdout), text(&o.stderr));
        let seen = if ct.status()["state"].as_str() == Some("running") {
            text(&ct.exec(&["ls", "-a", target]).stdout)
        } else {
            String::new()
        };
        assert!(!seen.contains("hostfile"), "the host folder is bound inside at {target}: {seen}\n{all}");
        assert!(!o.status.success(), "restart must refuse the symlinked volume {link} {all}");
        let err = text(&o.stderr);
        assert!(err.contains(volume), "the error names the volume {all}");
        assert!(err.contains("symlink"), "the error says it is a symlink {all}");
        assert_eq!(listing(host.path()), before, "something was created in the host folder");
        assert_eq!(std::fs::read_to_string(host.path().join("hostfile")).unwrap(), MARKER, "host file changed");
        // Undo from the host (the container is stopped) and start again.
        let rel = |p: &str| ct.volume("data").join(p.strip_prefix("/srv/data/").unwrap());
        std::fs::remove_file(rel(link)).expect("remove the planted symlink");
        std::fs::rename(rel(old), rel(link)).expect("put the folder back");
        ok(&["start", &ct.name]);
    }
    assert_eq!(listing(host.path()), before, "something was created in the host folder");
}
