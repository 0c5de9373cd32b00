//! Escape attempts against the user namespace and the mount flags (issue 10), done
//! for real from inside a container — as its root and, where it applies, as an
//! unprivileged service user — and each checked to fail and to leave the host as it
//! was: the identity uid map, a read-write remount of every read-only mount, mknod
//! on every writable mount, a setuid file planted in a volume and run by a host user.
//!
//! Containers are named `esc-u-*`; the one with a routed network takes its
//! addresses from salt 44.

mod support;

use std::os::unix::fs::MetadataExt;
use support::{host, host_ok, Ct};

/// A `host`-base container with a volume, a tmpfs, a rendered file and a service
/// running as `nobody`.
fn target(name: &str, extra: &str) -> Ct {
    let ct = Ct::new(
        name,
        &format!(
            r#"base = "host"
{extra}
[[mounts]]
target = "/srv/data"
type = "volume"
[[mounts]]
target = "/srv/scratch"
type = "tmpfs"
size = "1M"
[[files]]
path = "/srv/conf/app.conf"
content = "original\n"
mode = "0644"
[processes.svc]
command = ["/bin/sleep", "1000000"]
user = "nobody"
"#
        ),
    );
    ct.apply_ok();
    ct
}

/// Run `script` in the container as its root, or as `nobody` with `as_nobody`.
fn sh(ct: &Ct, as_nobody: bool, script: &str) -> String {
    let mut argv = vec![];
    if as_nobody {
        argv.extend(["/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]);
    }
    argv.extend(["/bin/sh", "-c", script]);
    let out = ct.exec(&argv);
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `key=value` lines of `out` whose key is `key`.
fn values<'a>(out: &'a str, key: &str) -> Vec<&'a str> {
    out.lines().filter_map(|l| l.strip_prefix(key)?.strip_prefix('=')).collect()
}

/// The first line of a uid_map, as (inside, outside, count).
fn first_map_line(map: &str) -> (u64, u64, u64) {
    let v: Vec<u64> = map.split_whitespace().take(3).map(|x| x.parse().expect("uid_map number")).collect();
    (v[0], v[1], v[2])
}

#[test]
fn uid_map_is_not_the_identity_and_status_and_plan_show_the_range() {
    require_host!();
    let ct = target("esc-u-map", "[network]\nmode = \"none\"");
    let who = sh(&ct, true, "id -u; grep CapEff /proc/self/status");
    assert_eq!(who, "65534\nCapEff:\t0000000000000000\n", "the unprivileged user of these tests");
    for as_nobody in [false, true] {
        let map = sh(&ct, as_nobody, "cat /proc/self/uid_map");
        assert_ne!(first_map_line(&map), (0, 0, 4294967295), "identity map (as nobody: {as_nobody})");
    }
    let st = ct.status();
    let base = st["user_namespace"]["container_root"].as_u64().unwrap_or_else(|| panic!("no range in status: {st}"));
    assert!(base >= 0x1000_0000, "range {base} is not above the host's ids");
    assert_eq!(st["user_namespace"]["host_uids"][1].as_u64(), Some(base + 65535), "{st}");
    for as_nobody in [false, true] {
        let map = sh(&ct, as_nobody, "cat /proc/self/uid_map; cat /proc/self/gid_map");
        let lines: Vec<&str> = map.lines().collect();
        assert_eq!(lines.len(), 2, "{map}");
        for l in lines {
            assert_eq!(first_map_line(l), (0, base, 65536), "as nobody: {as_nobody}: {map}");
        }
    }
    // The service's host uid is nobody shifted into the range, not a host user's.
    let pid1 = st["pid"].as_i64().expect("PID 1");
    let children = std::fs::read_to_string(format!("/proc/{pid1}/task/{pid1}/children")).expect("children");
    let uids: Vec<u64> = children
        .split_whitespace()
        .filter_map(|c| std::fs::read_to_string(format!("/proc/{c}/status")).ok())
        .filter_map(|s| s.lines().find(|l| l.starts_with("Uid:"))?.split_whitespace().nth(1)?.parse().ok())
        .collect();
    assert_eq!(uids, [base + 65534], "host uids of PID 1's children");
    let human = support::ok(&["status", &ct.name]);
    assert!(human.contains(&format!("user namespace: host uids/gids {base}-{}", base + 65535)), "{human}");
    let plan = support::container().arg("plan").arg(ct.spec()).output().expect("plan");
    let plan = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert!(plan.contains(&format!("(container root is host uid {base})")), "{plan}");
}

/// Every read-only mount, with a write to try behind it (a file to create in a
/// folder, or a file to append to).
const READ_ONLY: &[(&str, &str)] = &[
    ("/", "/esc-u-probe"),
    ("/usr", "/usr/esc-u-probe"),
    ("/etc", "/etc/esc-u-probe"),
    ("/srv/conf/app.conf", "/srv/conf/app.conf"),
    ("/proc/sys", "/proc/sys/kernel/core_pattern"),
    ("/sys", "/sys/kernel/uevent_helper"),
    ("/run/container/secrets", "/run/container/secrets/esc-u-probe"),
    // A masked folder (a read-only tmpfs over it): unmounting it would unmask it.
    ("/proc/acpi", "/proc/acpi/esc-u-probe"),
];

#[test]
fn read_only_mounts_cannot_be_remounted_or_written() {
    require_host!();
    let ct = target("esc-u-ro", "[network]\nmode = \"none\"");
    let core_pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").expect("core_pattern");
    let helper = std::fs::read_to_string("/sys/kernel/uevent_helper").unwrap_or_default();
    let mut script = String::new();
    for (mnt, probe) in READ_ONLY {
        // util-linux's mount uses the new mount API (fsconfig, mount_setattr) where it
        // can, the old remount otherwise: both are tried.
        script.push_str(&format!(
            "mount -o remount,rw,bind {mnt} 2>/dev/null; echo 'remount {mnt}='$?\n\
             mount -o remount,rw {mnt} 2>/dev/null; echo 'remount {mnt}='$?\n\
             umount -l {mnt} 2>/dev/null; echo 'umount {mnt}='$?\n\
             (echo '|/esc-u-pwned' >> {probe}) 2>/dev/null; echo 'write {mnt}='$?\n"
        ));
    }
    for as_nobody in [false, true] {
        let out = sh(&ct, as_nobody, &script);
        for (mnt, _) in READ_ONLY {
            for what in ["remount", "umount", "write"] {
                let rcs = values(&out, &format!("{what} {mnt}"));
                assert!(!rcs.is_empty(), "no {what} {mnt} result:\n{out}");
                assert!(rcs.iter().all(|rc| *rc != "0"), "{what} of {mnt} worked (as nobody: {as_nobody}):\n{out}");
            }
        }
    }
    // Nothing changed on the host, nor in the container's view.
    for p in ["/esc-u-probe", "/usr/esc-u-probe", "/etc/esc-u-probe"] {
        assert!(!std::path::Path::new(p).exists(), "{p} appeared on the host");
    }
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/core_pattern").expect("core_pattern"), core_pattern);
    assert_eq!(std::fs::read_to_string("/sys/kernel/uevent_helper").unwrap_or_default(), helper);
    let conf = ct.dirs().join("files/srv/conf/app.conf");
    assert_eq!(std::fs::read_to_string(conf).expect("rendered file"), "original\n");
    assert!(!ct.dirs().join("secrets/esc-u-probe").exists());
    let inside =
        ct.exec_ok(&["/bin/sh", "-c", "cat /srv/conf/app.conf; awk '$5 == \"/\"' /proc/self/mountinfo | wc -l"]);
    assert_eq!(inside, "original\n1\n", "the container's mounts changed");
}

/// Every writable mount of the container.
const WRITABLE: &[&str] = &["/srv/data", "/srv/scratch", "/run/container", "/dev", "/dev/shm", "/tmp", "/run", "/var"];

/// mknod of a harmless char device (1:3, what /dev/null is) on every writable mount,
/// then an open of it: the node is refused or cannot be opened. `as_nobody` only
/// tries mknod (it fails without CAP_MKNOD anyway).
fn mknod_script() -> String {
    let mut script = String::new();
    for m in WRITABLE {
        script.push_str(&format!(
            "n={m}/esc-u-node; mknod $n c 1 3 2>/dev/null; echo 'mknod {m}='$?\n\
             if [ -e $n ]; then (echo x > $n) 2>/dev/null; echo 'open {m}='$?; rm -f $n; else echo 'open {m}=none'; fi\n"
        ));
    }
    script
}

fn assert_no_usable_node(out: &str, who: &str) {
    for m in WRITABLE {
        let mk = values(out, &format!("mknod {m}"));
        let open = values(out, &format!("open {m}"));
        assert!(!mk.is_empty() && !open.is_empty(), "no result for {m}:\n{out}");
        assert!(mk[0] != "0" || open[0] != "0", "{who} made a usable device node on {m}:\n{out}");
    }
}

#[test]
fn mknod_on_every_writable_mount_gives_no_usable_node() {
    require_host!();
    let ct = target("esc-u-mknod", "[network]\nmode = \"none\"");
    for as_nobody in [false, true] {
        let out = sh(&ct, as_nobody, &mknod_script());
        assert_no_usable_node(&out, if as_nobody { "nobody" } else { "container root" });
        if !as_nobody {
            // In a user namespace the kernel refuses the node itself.
            for m in WRITABLE {
                assert_ne!(values(&out, &format!("mknod {m}"))[0], "0", "mknod worked on {m}:\n{out}");
            }
        }
    }
    for d in [ct.volume("srv-data"), ct.dirs().join("run")] {
        assert!(!d.join("esc-u-node").exists(), "a node stayed in {}", d.display());
    }
}

#[test]
fn setuid_file_planted_in_a_volume_gives_host_nobody_no_root() {
    require_host!();
    let ct = target("esc-u-suid", "[network]\nmode = \"none\"");
    ct.exec_ok(&["/bin/sh", "-c", "cp /usr/bin/id /srv/data/esc-u-id && chmod 4755 /srv/data/esc-u-id"]);
    let planted = ct.volume("srv-data").join("esc-u-id");
    let path = planted.to_str().expect("utf-8 path");
    // Run from where it was planted: the container's folder is host root's alone.
    let direct = host(&["runuser", "-u", "nobody", "--", path, "-u"]);
    let direct_out = String::from_utf8_lossy(&direct.stdout).into_owned();
    let cleanup = || {
        let _ = std::fs::remove_file(&planted);
    };
    if direct.status.success() && direct_out.trim() == "0" {
        cleanup();
        panic!("host nobody ran the planted file with euid 0");
    }
    assert!(!direct.status.success(), "host nobody reached the container's volume: {direct_out}");
    let base = ct.status()["user_namespace"]["container_root"].as_u64().expect("range");
    let meta = std::fs::metadata(&planted).expect("planted file on the host");
    assert_eq!(meta.mode() & 0o7777, 0o4755, "the plant is setuid");
    assert_eq!(meta.uid() as u64, base, "container root's file belongs to the range, not to host root");
    let mode = std::fs::metadata(ct.dirs()).expect("container folder").mode() & 0o777;
    assert_eq!(mode, 0o700, "the container's folder is reachable by host users");
    // And where nobody can reach it (a copy keeping owner and mode): its euid is the
    // container's root, an unprivileged host uid.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let copy = dir.path().join("esc-u-id");
    host_ok(&["cp", "-a", path, copy.to_str().expect("utf-8")]);
    assert_eq!(std::fs::metadata(&copy).expect("copy").mode() & 0o7777, 0o4755, "cp -a kept setuid");
    let euid = host_ok(&["runuser", "-u", "nobody", "--", copy.to_str().expect("utf-8"), "-u"]);
    assert_eq!(euid.trim(), base.to_string(), "setuid gave host nobody another euid than the range's root");
    std::fs::remove_file(&copy).expect("clean up the copy");
    ct.exec_ok(&["/bin/rm", "-f", "/srv/data/esc-u-id"]);
    assert!(!planted.exists());
}

#[test]
fn opt_out_says_host_root_and_still_gets_nodev_and_recursive_read_only_sys() {
    require_host!();
    let ct = target("esc-u-off", "[security]\nuser_namespace = false\n[network]\nmode = \"host\"");
    let st = ct.status();
    assert_eq!(st["user_namespace"]["enabled"], false, "{st}");
    let human = support::ok(&["status", &ct.name]);
    assert!(human.contains("user namespace: off (container root is host root)"), "{human}");
    let map = ct.exec_ok(&["/bin/cat", "/proc/self/uid_map"]);
    assert_eq!(first_map_line(&map), (0, 0, 4294967295), "{map}");
    // Host root inside may make nodes, but nodev makes them useless.
    let out = sh(&ct, false, &mknod_script());
    assert_no_usable_node(&out, "host root in an opted-out container");
    // With the host's network, /sys is the host's: read-only with every submount.
    let probe = "/sys/fs/cgroup/esc-u-probe";
    let out =
        sh(&ct, false, &format!("mkdir {probe} 2>&1; echo rc=$?; touch /sys/fs/cgroup/cgroup.procs 2>&1; echo rc=$?"));
    let made = std::path::Path::new(probe).exists();
    if made {
        let _ = std::fs::remove_dir(probe);
    }
    assert!(!made && values(&out, "rc").iter().all(|rc| *rc != "0"), "the host's cgroupfs is writable:\n{out}");
}

#[test]
fn routed_container_in_its_user_namespace_owns_its_network() {
    require_host!();
    // The network namespace belongs to the container's user namespace: its root
    // binds a low port (as sshd or caddy do) in it, and the host reaches it.
    let (v4, v6) = (support::v4(44, 2), support::v6(44, 2));
    let ct = Ct::new(
        "esc-u-net",
        &format!(
            r#"base = "host"
[network]
ipv4 = "{v4}"
ipv6 = "{v6}"
[processes.web]
command = ["/usr/bin/python3", "-m", "http.server", "80", "--bind", "::"]
ready = {{ tcp = 80 }}
"#
        ),
    );
    ct.apply_ok();
    let map = ct.exec_ok(&["/bin/cat", "/proc/self/uid_map"]);
    assert_ne!(first_map_line(&map).1, 0, "{map}");
    let out = host_ok(&["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://{v4}/")]);
    assert_eq!(out, "200");
}

#[test]
fn debian_overlay_root_is_idmapped_and_locked_read_only() {
    require_e2e!();
    let ct = Ct::new(
        "esc-u-deb",
        r#"base = "debian:trixie"
[network]
mode = "none"
[[mounts]]
target = "/srv/data"
type = "volume"
[processes.svc]
command = ["/bin/sleep", "1000000"]
user = "www-data"
"#,
    );
    ct.apply_ok();
    let base = ct.status()["user_namespace"]["container_root"].as_u64().expect("range");
    // The shared layers are not chowned, yet root owns them inside.
    let out = ct.exec_ok(&["/bin/sh", "-c", "stat -c '%u:%g' / /usr/bin /etc/passwd /srv/data; id -u"]);
    assert_eq!(out, "0:0\n0:0\n0:0\n0:0\n0\n", "ownership inside");
    let vol = std::fs::metadata(ct.volume("srv-data")).expect("volume");
    assert_eq!((vol.uid() as u64, vol.gid() as u64), (base, base), "volume owner on the host");
    let script = "for m in / /usr /etc; do mount -o remount,rw,bind $m 2>/dev/null; echo \"remount $m=$?\"; \
                  mount -o remount,rw $m 2>/dev/null; echo \"remount $m=$?\"; \
                  (echo x > $m/esc-u-probe) 2>/dev/null; echo \"write $m=$?\"; done; \
                  mknod /srv/data/esc-u-node c 1 3 2>/dev/null; echo \"mknod=$?\"";
    for as_nobody in [false, true] {
        let out = sh(&ct, as_nobody, script);
        for m in ["/", "/usr", "/etc"] {
            for what in ["remount", "write"] {
                let rcs = values(&out, &format!("{what} {m}"));
                assert!(!rcs.is_empty() && rcs.iter().all(|rc| *rc != "0"), "{what} {m} (nobody: {as_nobody}):\n{out}");
            }
        }
        assert_ne!(values(&out, "mknod"), ["0"], "{out}");
    }
    // The layers in the shared cache are unchanged and still host root's.
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ct.dirs().join("rootfs.json")).expect("rootfs.json")).expect("json");
    let cache = std::path::PathBuf::from(rec["cache"].as_str().expect("cache"));
    for id in rec["layers"].as_array().expect("layers") {
        let root = cache.join("layers").join(id.as_str().expect("id")).join("root");
        assert!(root.is_dir(), "{}", root.display());
        assert!(!root.join("esc-u-probe").exists());
        assert_eq!(std::fs::metadata(root.join("etc")).map(|m| m.uid()).unwrap_or(0), 0, "cache chowned");
    }
}

#[test]
fn volumes_with_host_ids_are_shifted_into_the_range_once_as_plan_shows() {
    require_host!();
    // A container that ran without a user namespace left host ids in its volume.
    let body = |extra: &str| {
        format!(
            r#"base = "host"
{extra}
[network]
mode = "none"
[[mounts]]
target = "/srv/data"
type = "volume"
[processes.svc]
command = ["/bin/sleep", "1000000"]
"#
        )
    };
    let ct = Ct::new("esc-u-mig", &body("[security]\nuser_namespace = false"));
    ct.apply_ok();
    ct.exec_ok(&["/bin/sh", "-c", "mkdir /srv/data/d && echo x > /srv/data/d/f && chown 33:33 /srv/data/d/f"]);
    let f = ct.volume("srv-data").join("d/f");
    assert_eq!(std::fs::metadata(&f).map(|m| (m.uid(), m.gid())).expect("file"), (33, 33));
    ct.write(&body(""));
    let plan = support::container().arg("plan").arg(ct.spec()).output().expect("plan");
    let text = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert_eq!(plan.status.code(), Some(2), "{text}");
    assert!(text.contains("~ volume srv-data: shift its host ids into the container's uid range"), "{text}");
    let out = ct.apply_ok();
    let base = ct.status()["user_namespace"]["container_root"].as_u64().expect("range");
    let meta = |p: &std::path::Path| std::fs::metadata(p).map(|m| (m.uid() as u64, m.gid() as u64)).expect("stat");
    assert_eq!(meta(&f), (base + 33, base + 33), "{out}");
    assert_eq!(meta(&ct.volume("srv-data")), (base, base));
    let inside =
        ct.exec_ok(&["/bin/sh", "-c", "stat -c %u:%g /srv/data /srv/data/d /srv/data/d/f; cat /proc/self/uid_map"]);
    let lines: Vec<&str> = inside.lines().collect();
    assert_eq!(lines[..3], ["0:0", "0:0", "33:33"], "{inside}");
    assert_eq!(first_map_line(lines[3]).1, base);
    // Once: the next plan has nothing to shift.
    let plan = support::container().arg("plan").arg(ct.spec()).output().expect("plan");
    let text = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert!(!text.contains("~ volume"), "{text}");
    assert_eq!(plan.status.code(), Some(0), "{text}");
    // Opting out again gives the volume back to host ids, once.
    ct.write(&body("[security]\nuser_namespace = false"));
    let plan = support::container().arg("plan").arg(ct.spec()).output().expect("plan");
    let text = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert!(text.contains("~ volume srv-data: shift its ids back to host ids"), "{text}");
    ct.apply_ok();
    assert_eq!(meta(&f), (33, 33));
    assert_eq!(meta(&ct.volume("srv-data")), (0, 0));
    let plan = support::container().arg("plan").arg(ct.spec()).output().expect("plan");
    assert_eq!(plan.status.code(), Some(0), "{}", String::from_utf8_lossy(&plan.stdout));
}
