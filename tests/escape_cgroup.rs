//! Escape attempts through cgroups, for real, from inside containers started by the
//! real CLI (`base = "host"` specs, root only): the cgroup namespace, the cgroupfs a
//! container sees or mounts itself, the host's `release_agent`, the pids and memory
//! limits, another container's `cgroup.kill`, and the device allow-list. Each attack
//! runs as the container's root and, where it applies, as an unprivileged user
//! (`setpriv` to uid/gid 65534), and must fail; afterwards the host is checked
//! unchanged (its `release_agent`s, no cgroup left behind).
//!
//! Nothing here writes a host cgroup file: an attack that would change the host if
//! it worked (writing a `release_agent`) is only probed by looking for the file.
//! Devices opened are harmless character devices (kmsg, tun), read-only, never a
//! memory, port or block device. Containers are named `esc-c-*` and use no network
//! (`mode = "none"`), so the address salt 46 of this file is not needed yet.

mod support;

use container::exec::cgroup::{discover, Hierarchy, Version, PARENT};
use std::path::PathBuf;
use std::process::Output;
use support::{text, Ct};

const SLEEPER: &str = "[processes.main]\ncommand = [\"/bin/sleep\", \"infinity\"]\n";

/// Runs as an unprivileged user inside (no groups, no capabilities).
const NOBODY: [&str; 6] = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"];

/// A `base = "host"` container without network, with `extra` spec text.
fn start(name: &str, extra: &str) -> Ct {
    let ct = Ct::new(name, &format!("base = \"host\"\n[network]\nmode = \"none\"\n{extra}{SLEEPER}"));
    ct.apply_ok();
    ct
}

/// `sh -c script` in the container as its root; `(exit code, stdout, stderr)`.
fn sh(ct: &Ct, script: &str) -> (i32, String, String) {
    split(ct.exec(&["/bin/sh", "-c", script]))
}

/// `sh -c script` in the container as uid/gid 65534.
fn sh_nobody(ct: &Ct, script: &str) -> (i32, String, String) {
    let mut argv: Vec<&str> = NOBODY.to_vec();
    argv.extend(["--", "/bin/sh", "-c", script]);
    split(ct.exec(&argv))
}

fn split(out: Output) -> (i32, String, String) {
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn pid1(ct: &Ct) -> i64 {
    ct.status()["pid"].as_i64().unwrap_or_else(|| panic!("{} is not running", ct.name))
}

fn v1(hs: &[Hierarchy]) -> impl Iterator<Item = &Hierarchy> {
    hs.iter().filter(|h| h.version == Version::V1)
}

/// The `-o` options that mount the same v1 hierarchy again.
fn mount_opts(h: &Hierarchy) -> String {
    match &h.name {
        Some(n) if h.controllers.is_empty() => format!("none,name={n}"),
        Some(n) => format!("{},name={n}", h.controllers.join(",")),
        None => h.controllers.join(","),
    }
}

/// What a test must leave unchanged on the host: every v1 hierarchy's `release_agent`.
fn host_state() -> Vec<String> {
    let mut out = Vec::new();
    for h in discover().expect("mountinfo") {
        if let Ok(agent) = std::fs::read_to_string(h.mount.join("release_agent")) {
            out.push(format!("{}: release_agent {agent:?}", h.mount.display()));
        }
    }
    out
}

/// No cgroup `name` (a container's host key, `support::host_key`) is left in any
/// hierarchy of the host.
#[track_caller]
fn assert_no_cgroups(name: &str) {
    for h in discover().expect("mountinfo") {
        let d = h.mount.join(PARENT).join(name);
        assert!(!d.exists(), "{} is left behind", d.display());
    }
}

/// Host pids of every process in the pid namespace of host pid `pid`.
fn pids_in_ns_of(pid: i64) -> Vec<i64> {
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/pid")).expect("pid ns");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i64>() else { continue };
        if std::fs::read_link(format!("/proc/{p}/ns/pid")).ok().as_ref() == Some(&ns) {
            out.push(p);
        }
    }
    out
}

/// The lines of host `/proc/<pid>/cgroup` that are not the container's own cgroup
/// `container/<name>` or the cgroup of one of its services below it (`svc-<service>`,
/// made by its supervisor), `name` its host key (a process that exited meanwhile
/// has none).
fn outside_own_cgroups(pid: i64, name: &str) -> Vec<String> {
    let own = format!("/{PARENT}/{name}");
    let service =
        |l: &str| l.rsplit_once('/').is_some_and(|(dir, leaf)| dir.ends_with(&own) && leaf.starts_with("svc-"));
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    text.lines().filter(|l| !l.ends_with(&own) && !service(l)).map(|l| format!("pid {pid}: {l}")).collect()
}

#[test]
fn the_cgroup_namespace_is_rooted_at_the_containers_own_cgroups() {
    require_host!();
    let before = host_state();
    {
        let ct = start("esc-c-ns", "[limits]\npids = 64\nmemory = \"128M\"\n");
        // Inside, every hierarchy's path is "/" (PID 1, a root shell, an unprivileged one).
        let (code, out, err) = sh(&ct, "cat /proc/1/cgroup; echo --; cat /proc/self/cgroup");
        assert_eq!(code, 0, "{err}");
        let (code, nobody, err) = sh_nobody(&ct, "id -u; cat /proc/self/cgroup");
        assert_eq!(code, 0, "{err}");
        assert!(nobody.starts_with("65534\n"), "{nobody}");
        for line in out.lines().chain(nobody.lines().skip(1)).filter(|l| *l != "--") {
            assert!(line.ends_with(":/"), "not the root of its cgroup namespace: {line:?}\n{out}{nobody}");
        }
        assert!(out.lines().any(|l| l == "0::/"), "{out}");
        // And that root is the container's own cgroup in every hierarchy of the host.
        let pid = pid1(&ct);
        let host_view = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup of PID 1");
        assert_eq!(outside_own_cgroups(pid, &ct.key()), Vec::<String>::new(), "{host_view}");
        assert_eq!(host_view.lines().count(), out.lines().take_while(|l| *l != "--").count());
    }
    assert_eq!(host_state(), before);
    assert_no_cgroups(&support::host_key("esc-c-ns"));
}

#[test]
fn the_cgroupfs_inside_is_read_only_and_shows_only_the_container() {
    require_host!();
    let before = host_state();
    {
        let ct = start("esc-c-fs", "");
        let script = "stat -f -c %T /sys/fs/cgroup; \
            echo $$ > /sys/fs/cgroup/cgroup.procs && echo WROTE-PROCS; \
            mkdir /sys/fs/cgroup/escape && echo MADE-CGROUP; \
            find /sys/fs/cgroup -mindepth 1 -type d ! -name 'svc-*' | sed 's/^/SUBDIR /'; \
            mkdir -p /tmp/cg2 && mount -t cgroup2 none /tmp/cg2 && { \
              echo MOUNTED; find /tmp/cg2 -mindepth 1 -type d ! -name 'svc-*' | sed 's/^/NEW-SUBDIR /'; umount /tmp/cg2; }; \
            echo done";
        let (code, out, err) = sh(&ct, script);
        assert_eq!(code, 0, "{err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.first(), Some(&"cgroup2fs"), "/sys/fs/cgroup is not a cgroup2 mount:\n{out}");
        for bad in ["WROTE-PROCS", "MADE-CGROUP", "SUBDIR ", "NEW-SUBDIR "] {
            assert!(!lines.iter().any(|l| l.starts_with(bad)), "{bad}:\n{out}\n{err}");
        }
        assert!(err.contains("Read-only file system"), "{err}");
        assert_eq!(lines.last(), Some(&"done"), "{out}");
        // A new cgroup2 mount (if the container may mount at all) showed the same
        // tree: the container's own cgroup, without the host's `container/` or
        // anything else. An unprivileged user cannot write either.
        let (code, out, err) = sh_nobody(&ct, "echo $$ > /sys/fs/cgroup/cgroup.procs && echo WROTE; echo done");
        assert_eq!((code, out.as_str()), (0, "done\n"), "{err}");
        // Nothing was created on the host side either, but the cgroup of each
        // service (`svc-<name>`, the supervisor's).
        let own = discover().expect("mountinfo").into_iter().find(|h| h.version == Version::V2);
        if let Some(v2) = own {
            let dir = v2.mount.join(PARENT).join(ct.key());
            let subdirs: Vec<PathBuf> = std::fs::read_dir(&dir)
                .expect("the container's cgroup2 cgroup")
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter(|e| e.file_name() != "svc-main")
                .map(|e| e.path())
                .collect();
            assert_eq!(subdirs, Vec::<PathBuf>::new());
        }
    }
    assert_eq!(host_state(), before);
    assert_no_cgroups(&support::host_key("esc-c-fs"));
}

#[test]
fn no_v1_hierarchy_shows_the_hosts_release_agent() {
    require_host!();
    let hs = discover().expect("mountinfo");
    if v1(&hs).next().is_none() {
        eprintln!("no cgroup v1 hierarchy on this host: no release_agent to reach");
        return;
    }
    let before = host_state();
    {
        let ct = start("esc-c-agent", "");
        // Mount each v1 hierarchy again from inside (as its root would, to plant a
        // release_agent); only look: writing one would change the host if it worked.
        let mut script = String::new();
        for (i, h) in v1(&hs).enumerate() {
            let o = mount_opts(h);
            script.push_str(&format!(
                "mkdir -p /tmp/v1-{i} && mount -t cgroup -o {o} cgroup /tmp/v1-{i} && {{ echo MOUNTED {o}; \
                 test -e /tmp/v1-{i}/release_agent && echo REACHABLE {o}; \
                 find /tmp/v1-{i} -mindepth 1 -type d | sed 's/^/SUBDIR /'; umount /tmp/v1-{i}; }}; "
            ));
        }
        script.push_str("ls /sys/fs/cgroup/release_agent 2>/dev/null && echo REACHABLE inside; echo done");
        let (code, out, err) = sh(&ct, &script);
        assert_eq!(code, 0, "{err}");
        for bad in ["REACHABLE", "SUBDIR"] {
            assert!(!out.lines().any(|l| l.starts_with(bad)), "{bad}:\n{out}\n{err}");
        }
        assert_eq!(out.lines().last(), Some("done"), "{out}");
        // The unprivileged user cannot even mount.
        let (code, out, _) = sh_nobody(
            &ct,
            "mkdir -p /tmp/u && mount -t cgroup -o none,name=x cgroup /tmp/u && echo MOUNTED; echo done",
        );
        assert_eq!((code, out.as_str()), (0, "done\n"));
    }
    assert_eq!(host_state(), before, "a release_agent or cgroup of the host changed");
    assert_no_cgroups(&support::host_key("esc-c-agent"));
}

/// Every way out a process has from inside, as a shell script: its own view's
/// `cgroup.procs`, the parent of that view, and the roots of freshly mounted cgroupfs
/// (cgroup2 and each v1 hierarchy) — on a host tree those are the host's root cgroups.
fn move_out_script(hs: &[Hierarchy]) -> String {
    let mut s = String::from(
        "for f in /sys/fs/cgroup/cgroup.procs /sys/fs/cgroup/../cgroup.procs; do echo $$ > $f && echo MOVED $f; done; \
         mkdir -p /tmp/m2 && mount -t cgroup2 none /tmp/m2 && { echo $$ > /tmp/m2/cgroup.procs; umount /tmp/m2; }; ",
    );
    for (i, h) in v1(hs).enumerate() {
        s.push_str(&format!(
            "mkdir -p /tmp/m1-{i} && mount -t cgroup -o {o} cgroup /tmp/m1-{i} && \
             {{ echo $$ > /tmp/m1-{i}/cgroup.procs; umount /tmp/m1-{i}; }}; ",
            o = mount_opts(h)
        ));
    }
    s
}

#[test]
fn the_pids_limit_cannot_be_escaped() {
    require_host!();
    let hs = discover().expect("mountinfo");
    let before = host_state();
    {
        const MAX: usize = 16;
        let ct = start("esc-c-pids", &format!("[limits]\npids = {MAX}\n"));
        // Try to move out, then fork 40 sleeps; the shell (dash) stops at the first
        // failed fork. The sleeps are killed with the container.
        let forks =
            "i=0; while [ $i -lt 40 ]; do sleep 1000 </dev/null >/dev/null 2>&1 & i=$((i+1)); echo forked $i; done";
        for as_root in [true, false] {
            let script = if as_root { format!("{} {forks}", move_out_script(&hs)) } else { forks.to_string() };
            let (_, out, err) = if as_root { sh(&ct, &script) } else { sh_nobody(&ct, &script) };
            assert!(!out.contains("MOVED"), "{out}\n{err}");
            let forked = out.lines().filter(|l| l.starts_with("forked ")).count();
            assert!(forked < MAX, "{forked} sleeps forked past pids = {MAX} (root: {as_root}):\n{out}\n{err}");
            // Every process of the container, escaped or not, is still counted there.
            let pid = pid1(&ct);
            let all = pids_in_ns_of(pid);
            assert!(all.len() <= MAX, "{} processes in the container: {all:?}", all.len());
            let outside: Vec<String> = all.iter().flat_map(|p| outside_own_cgroups(*p, &ct.key())).collect();
            assert_eq!(outside, Vec::<String>::new());
            // Make room for the next round: kill the sleeps.
            for p in all {
                if std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default() == b"sleep\x001000\x00" {
                    // SAFETY: kill(2) on a pid of the container, which we just read.
                    unsafe { libc::kill(p as i32, libc::SIGKILL) };
                }
            }
            support::eventually("the sleeps to die", 10, || (pids_in_ns_of(pid).len() <= 2).then_some(()));
        }
    }
    assert_eq!(host_state(), before);
    assert_no_cgroups(&support::host_key("esc-c-pids"));
}

#[test]
fn the_memory_limit_cannot_be_escaped() {
    require_host!();
    let hs = discover().expect("mountinfo");
    let before = host_state();
    {
        let ct = start("esc-c-mem", "[limits]\nmemory = \"64M\"\n");
        // A sleep left behind shows the host where the shell ended up.
        let script = format!(
            "{} grep memory /proc/self/cgroup; grep '^0::' /proc/self/cgroup; sleep 1000 </dev/null >/dev/null 2>&1 &",
            move_out_script(&hs)
        );
        let (code, out, err) = sh(&ct, &script);
        assert_eq!(code, 0, "{err}");
        for l in out.lines() {
            assert!(l.ends_with(":/"), "moved out of its own cgroup: {l:?}\n{out}\n{err}");
        }
        // From the host: every process of the container is in its own cgroups (the
        // memory one first: the inside view of a namespace root is "/" wherever that
        // root is), and the limit is the spec's.
        let all = pids_in_ns_of(pid1(&ct));
        assert!(all.len() >= 3, "PID 1, its service and the sleep: {all:?}");
        let memory_outside: Vec<String> =
            all.iter().flat_map(|p| outside_own_cgroups(*p, &ct.key())).filter(|l| l.contains(":memory:")).collect();
        assert_eq!(memory_outside, Vec::<String>::new(), "escaped the memory limit");
        let outside: Vec<String> =
            pids_in_ns_of(pid1(&ct)).iter().flat_map(|p| outside_own_cgroups(*p, &ct.key())).collect();
        assert_eq!(outside, Vec::<String>::new());
        let memory = hs.iter().find(|h| h.controllers.iter().any(|c| c == "memory"));
        if let Some(h) = memory {
            let file = if h.version == Version::V1 { "memory.limit_in_bytes" } else { "memory.max" };
            let limit = std::fs::read_to_string(h.mount.join(PARENT).join(ct.key()).join(file)).expect("limit");
            assert_eq!(limit.trim(), (64u64 << 20).to_string());
        }
    }
    assert_eq!(host_state(), before);
    assert_no_cgroups(&support::host_key("esc-c-mem"));
}

#[test]
fn another_containers_cgroup_kill_is_out_of_reach() {
    require_host!();
    let before = host_state();
    {
        let victim = start("esc-c-victim", "");
        let attacker = start("esc-c-attacker", "");
        let victim_pid = pid1(&victim);
        let victim_main = victim.service_pid("main");
        let v = &victim.key();
        let script = format!(
            "mkdir -p /tmp/k && mount -t cgroup2 none /tmp/k && echo MOUNTED; \
             for f in /tmp/k/{PARENT}/{v}/cgroup.kill /sys/fs/cgroup/{PARENT}/{v}/cgroup.kill \
                      /sys/fs/cgroup/../{PARENT}/{v}/cgroup.kill /sys/fs/cgroup/unified/{PARENT}/{v}/cgroup.kill; do \
               [ -e $f ] && echo 1 > $f && echo KILLED-VIA $f; done; \
             find /tmp/k /sys/fs/cgroup -name cgroup.kill | grep -v '^/tmp/k/cgroup.kill$' | grep -v '^/sys/fs/cgroup/cgroup.kill$' \
               | grep -v -E '^(/tmp/k|/sys/fs/cgroup)/svc-main/cgroup.kill$' | sed 's/^/SEES /'; \
             echo done"
        );
        // Its own service's cgroup (`svc-main`, the supervisor's) it may see.
        let (_, out, err) = sh(&attacker, &script);
        assert!(!out.contains("KILLED-VIA") && !out.contains("SEES "), "{out}\n{err}");
        assert!(out.ends_with("done\n"), "{out}\n{err}");
        let (_, out, err) = sh_nobody(&attacker, &script);
        assert!(!out.contains("KILLED-VIA") && !out.contains("SEES ") && !out.contains("MOUNTED"), "{out}\n{err}");
        // The victim lives on, with the same PID 1.
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(pid1(&victim), victim_pid);
        assert!(std::path::Path::new(&format!("/proc/{victim_pid}")).exists(), "the victim's PID 1 died");
        assert_eq!(victim.service_pid("main"), victim_main);
        let main_host_pid = pids_in_ns_of(victim_pid).into_iter().find(|p| *p != victim_pid);
        assert!(main_host_pid.is_some(), "the victim's service died");
    }
    assert_eq!(host_state(), before);
    assert_no_cgroups(&support::host_key("esc-c-victim"));
    assert_no_cgroups(&support::host_key("esc-c-attacker"));
}

#[test]
fn a_device_off_the_allow_list_cannot_be_made_or_opened() {
    require_host!();
    let before = host_state();
    {
        let ct = start("esc-c-dev", "");
        // Nodes planted from the host (as a bind or an earlier mknod would give them):
        // kmsg (1:11) and tun (10:200), world-readable, in the container's /dev tmpfs.
        let dev = PathBuf::from(format!("/proc/{}/root/dev", pid1(&ct)));
        for (node, major, minor) in [("esc-kmsg", 1, 11), ("esc-tun", 10, 200)] {
            let path = dev.join(node);
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
            // SAFETY: mknod with a NUL-terminated path; creates a node in the container's tmpfs.
            let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(major, minor)) };
            assert_eq!(r, 0, "mknod {}: {}", path.display(), std::io::Error::last_os_error());
        }
        let open = "for d in esc-kmsg esc-tun; do (exec 3</dev/$d) && echo OPENED $d; done; \
                    mknod /dev/esc-made c 1 11 && echo MADE; \
                    for d in null zero full random urandom; do (exec 3</dev/$d) || echo DENIED $d; done; \
                    (exec 3<>/dev/ptmx) || echo DENIED ptmx; echo done";
        for as_root in [true, false] {
            let (_, out, err) = if as_root { sh(&ct, open) } else { sh_nobody(&ct, open) };
            assert!(!out.contains("OPENED") && !out.contains("MADE") && !out.contains("DENIED"), "{out}\n{err}");
            assert!(out.ends_with("done\n"), "{out}\n{err}");
            // Refused by the device cgroup (EPERM), not by a file mode or nodev (EACCES).
            for node in ["esc-kmsg", "esc-tun"] {
                assert!(err.contains(&format!("cannot open /dev/{node}: Operation not permitted")), "{err}");
            }
            if as_root {
                assert!(err.contains("mknod: /dev/esc-made: Operation not permitted"), "{err}");
            }
        }
        for node in ["esc-kmsg", "esc-tun"] {
            std::fs::remove_file(dev.join(node)).expect("remove the planted node");
        }
    }
    assert_eq!(host_state(), before);
    assert_no_cgroups(&support::host_key("esc-c-dev"));
}

/// The same rooting holds with a user namespace (what the sandbox does for a
/// container whose root is an unprivileged host uid): the child joins the cgroups
/// through fds the parent opened, then unshares the cgroup namespace, owned by its
/// user namespace, and mounts its own cgroup2 subtree read-only.
#[test]
fn with_a_user_namespace_the_cgroup_namespace_is_rooted_there_too() {
    require_host!();
    use container::exec::cgroup::Cgroups;
    use container::exec::sandbox::{spawn, Exit, IdMap, IdRange, Program, RootFs, SandboxSpec, Stdio};
    use container::plan::types::LimitsRes;
    use std::os::fd::OwnedFd;

    let name = "esc-c-userns";
    let (cg, _) = Cgroups::create(name, &LimitsRes { pids: Some(32), ..Default::default() }).expect("cgroups");
    let script = "id -u; cat /proc/self/cgroup; stat -f -c %T /sys/fs/cgroup; \
                  echo $$ > /sys/fs/cgroup/cgroup.procs && echo WROTE; echo done";
    let argv = ["/bin/sh", "-c", script].map(String::from).to_vec();
    let mut spec = SandboxSpec::new(name, RootFs::Host, Program::Path(argv));
    let ids = vec![IdRange { inside: 0, outside: 200_000, count: 65536 }];
    spec.user_ns = Some(IdMap { uids: ids.clone(), gids: ids });
    spec.cgroups = cg.dirs().to_vec();
    let out = tempfile::tempfile().expect("tempfile");
    let fd = |f: &std::fs::File| Some(OwnedFd::from(f.try_clone().expect("dup")));
    let stdio = Stdio { stdin: None, stdout: fd(&out), stderr: fd(&out) };
    let pending = spawn(&spec, stdio).expect("spawn");
    // Born in the cgroups, before any setup ran in it.
    let host_view = std::fs::read_to_string(format!("/proc/{}/cgroup", pending.pid())).expect("cgroup");
    assert_eq!(outside_own_cgroups(pending.pid().into(), name), Vec::<String>::new(), "{host_view}");
    let exit = pending.release().expect("release").wait().expect("wait");
    let text =
        std::fs::read_to_string(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&out))).expect("output");
    cg.remove().expect("remove the cgroups");
    assert_eq!(exit, Exit::Code(0), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"0"), "{text}");
    assert!(lines.contains(&"0::/"), "{text}");
    let cgroup_line = |l: &&&str| l.contains(':') && l.split(':').next().is_some_and(|n| n.parse::<u32>().is_ok());
    for l in lines.iter().filter(cgroup_line) {
        assert!(l.ends_with(":/"), "{l:?} in\n{text}");
    }
    assert!(lines.contains(&"cgroup2fs"), "{text}");
    assert!(!lines.contains(&"WROTE") && lines.last() == Some(&"done"), "{text}");
    assert_no_cgroups(name);
}

/// Without the v1 `devices` controller (a pure cgroup2 host: simulated here by
/// leaving that hierarchy out), the allow-list is a BPF program on the container's
/// cgroup2 cgroup, and it refuses the same: opening a bound node off the list
/// (kmsg, 1:11) and mknod, while the default nodes still work.
#[test]
fn on_cgroup2_alone_a_bpf_program_enforces_the_device_list() {
    require_host!();
    use container::exec::cgroup::Cgroups;
    use container::exec::sandbox::{spawn, Exit, Program, RootFs, SandboxSpec, Stdio};
    use container::plan::types::LimitsRes;
    use std::os::fd::OwnedFd;

    let hs: Vec<Hierarchy> =
        discover().expect("mountinfo").into_iter().filter(|h| !h.controllers.iter().any(|c| c == "devices")).collect();
    if !hs.iter().any(|h| h.version == Version::V2) {
        eprintln!("no cgroup2 on this host: no BPF device filter to test");
        return;
    }
    let name = "esc-c-bpf";
    let (cg, warnings) = Cgroups::create_in(&hs, name, &LimitsRes::default()).expect("cgroups with a BPF filter");
    assert!(warnings.is_empty(), "{warnings:?}");
    let script = "(exec 3</dev/kmsg) && echo OPENED kmsg; mknod /tmp/n c 1 11 && echo MADE; \
                  for d in null zero full random urandom; do (exec 3<>/dev/$d) || echo DENIED $d; done; \
                  (exec 3<>/dev/ptmx) || echo DENIED ptmx; echo done";
    let argv = ["/bin/sh", "-c", script].map(String::from).to_vec();
    let mut spec = SandboxSpec::new(name, RootFs::Host, Program::Path(argv));
    spec.devices = vec!["/dev/kmsg".into()];
    spec.cgroups = cg.dirs().to_vec();
    let out = tempfile::tempfile().expect("tempfile");
    let fd = |f: &std::fs::File| Some(OwnedFd::from(f.try_clone().expect("dup")));
    let pending = spawn(&spec, Stdio { stdin: None, stdout: fd(&out), stderr: fd(&out) }).expect("spawn");
    let exit = pending.release().expect("release").wait().expect("wait");
    let text =
        std::fs::read_to_string(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&out))).expect("output");
    cg.remove().expect("remove the cgroups");
    assert_eq!(exit, Exit::Code(0), "{text}");
    for bad in ["OPENED", "MADE", "DENIED"] {
        assert!(!text.contains(bad), "{bad}:\n{text}");
    }
    assert!(text.contains("cannot open /dev/kmsg: Operation not permitted"), "{text}");
    assert!(text.contains("mknod: /tmp/n: Operation not permitted"), "{text}");
    assert!(text.ends_with("done\n"), "{text}");
    assert_no_cgroups(name);
}

/// A cgroup made below the container's own (by a container that could, or a crash
/// mid-way) does not survive into the next start with its own rules: create removes
/// it, and the device list is written again.
#[test]
fn a_leftover_child_cgroup_is_removed_on_the_next_create() {
    require_host!();
    use container::exec::cgroup::Cgroups;
    use container::plan::types::LimitsRes;

    /// Removes the cgroups (and what a failed assertion left in them) whatever happens.
    struct Cleanup(&'static str);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Cgroups::open(self.0).map(|c| c.remove());
        }
    }
    let name = "esc-c-left";
    let _cleanup = Cleanup(name);
    let (cg, _) = Cgroups::create(name, &LimitsRes::default()).expect("cgroups");
    for d in cg.dirs() {
        std::fs::create_dir(d.join("planted")).expect("a child cgroup");
    }
    let (again, _) = Cgroups::create(name, &LimitsRes::default()).expect("create over the leftover");
    assert_eq!(again.dirs(), cg.dirs());
    for d in again.dirs() {
        assert!(!d.join("planted").exists(), "{} kept its child", d.display());
        if let Ok(list) = std::fs::read_to_string(d.join("devices.list")) {
            assert!(list.lines().all(|l| l.ends_with(" rwm") && !l.starts_with("a ")), "{list}");
        }
    }
    again.remove().expect("remove");
    assert_no_cgroups(name);
}

/// With `network.mode = "host"` /sys is the host's, bound read-only: its cgroup
/// submounts (the whole host tree, writable) do not come along, and unmounting the
/// container's own cgroup2 mount reveals nothing below it.
#[test]
fn in_host_network_mode_the_hosts_cgroup_mounts_are_not_there() {
    require_host!();
    let before = host_state();
    {
        let ct = Ct::new("esc-c-hostnet", &format!("base = \"host\"\n[network]\nmode = \"host\"\n{SLEEPER}"));
        ct.apply_ok();
        let script = "grep -E ' - cgroup2? ' /proc/self/mountinfo | cut -d' ' -f5,6 | sed 's/^/MOUNT /'; \
                      umount /sys/fs/cgroup && echo UNMOUNTED; \
                      grep -E ' - cgroup2? ' /proc/self/mountinfo | cut -d' ' -f5 | sed 's/^/LEFT /'; \
                      ls -A /sys/fs/cgroup | sed 's/^/ENTRY /'; echo done";
        let (code, out, err) = sh(&ct, script);
        assert_eq!(code, 0, "{err}");
        let mounts: Vec<&str> = out.lines().filter(|l| l.starts_with("MOUNT ")).collect();
        assert_eq!(mounts.len(), 1, "{out}");
        assert!(mounts[0].starts_with("MOUNT /sys/fs/cgroup ro,"), "{out}");
        if out.contains("UNMOUNTED") {
            assert!(!out.contains("LEFT ") && !out.contains("ENTRY "), "the host's cgroups are below:\n{out}");
        }
        assert!(out.ends_with("done\n"), "{out}\n{err}");
    }
    assert_eq!(host_state(), before);
    assert_no_cgroups(&support::host_key("esc-c-hostnet"));
}
