//! Real containers (root only): each test starts its own container running the
//! host's /bin/sh with a short script and checks what the script saw. Host tier
//! (`require_host!`), but for the probes (run inside a container by another test)
//! and a refusal that happens before anything is made.

mod support;
use container::exec::sandbox::*;
use std::collections::BTreeSet;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

const PROBE_ENV: &str = "CONTAINER_SANDBOX_PROBE";

fn sh(script: &str) -> Program {
    Program::Path(vec!["/bin/sh".into(), "-c".into(), script.into()])
}

fn spec(script: &str) -> SandboxSpec {
    SandboxSpec::new("ctt-box", RootFs::Host, sh(script))
}

/// Run to completion; stdout and stderr go to one file (not a pipe: a pipe's write
/// end could be inherited by a container another test thread is setting up).
fn run(spec: &SandboxSpec) -> (Exit, String) {
    let out = tempfile::tempfile().expect("tempfile");
    let stdio = Stdio {
        stdin: None,
        stdout: Some(OwnedFd::from(out.try_clone().expect("dup"))),
        stderr: Some(OwnedFd::from(out.try_clone().expect("dup"))),
    };
    let pending = spawn(spec, stdio).expect("spawn");
    let mut child = pending.release().expect("release");
    let exit = child.wait().expect("wait");
    let text = std::fs::read_to_string(fd_path(&out)).expect("read output");
    (exit, text)
}

fn fd_path(f: &File) -> String {
    use std::os::fd::AsRawFd;
    format!("/proc/self/fd/{}", f.as_raw_fd())
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn pid1_is_our_program_and_proc_shows_only_the_container() {
    require_host!();
    let (exit, out) = run(&spec("echo $$; for p in /proc/[0-9]*; do echo ${p#/proc/}; done"));
    assert_eq!(exit, Exit::Code(0), "{out}");
    assert_eq!(lines(&out), ["1", "1"], "only pid 1 in the container's /proc");
}

#[test]
fn hostname_is_set() {
    require_host!();
    let (exit, out) = run(&spec("cat /proc/sys/kernel/hostname; uname -n"));
    assert_eq!(exit, Exit::Code(0), "{out}");
    assert_eq!(lines(&out), ["ctt-box", "ctt-box"]);
}

#[test]
fn host_only_paths_are_not_visible() {
    require_host!();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("secret"), "x").expect("write");
    let script = format!(
        "test -e {d} && echo visible || echo hidden; ls -A /root | wc -l; test -e /work && echo work || echo nowork; ls -A /tmp | wc -l",
        d = dir.path().display()
    );
    let (exit, out) = run(&spec(&script));
    assert_eq!(exit, Exit::Code(0), "{out}");
    assert_eq!(lines(&out), ["hidden", "0", "nowork", "0"]);
}

#[test]
fn root_is_read_only_but_tmpfs_and_volumes_are_writable() {
    require_host!();
    let vol = tempfile::tempdir().expect("tempdir");
    let ro = tempfile::tempdir().expect("tempdir");
    std::fs::write(ro.path().join("given"), "from host").expect("write");
    let mut s = spec(
        "touch /x 2>/dev/null && echo root-rw || echo root-ro; \
         touch /etc/x 2>/dev/null && echo etc-rw || echo etc-ro; \
         touch /scratch/a && echo tmpfs-rw; \
         echo hello > /srv/data/f && echo vol-rw; \
         cat /srv/conf/given; echo; touch /srv/conf/y 2>/dev/null && echo ro-vol-rw || echo ro-vol-ro; \
         touch /tmp/t && echo tmp-rw; stat -c %a /scratch",
    );
    s.mounts = vec![
        MountReq {
            target: "/scratch".into(),
            kind: MountSource::Tmpfs { size: Some(1 << 20), mode: 0o700, uid: 0, gid: 0 },
        },
        MountReq::bind("/srv/data", vol.path(), false),
        MountReq::bind("/srv/conf", ro.path(), true),
    ];
    let (exit, out) = run(&s);
    assert_eq!(exit, Exit::Code(0), "{out}");
    assert_eq!(lines(&out), ["root-ro", "etc-ro", "tmpfs-rw", "vol-rw", "from host", "ro-vol-ro", "tmp-rw", "700"]);
    assert_eq!(std::fs::read_to_string(vol.path().join("f")).expect("volume file on the host"), "hello\n");
    assert!(!ro.path().join("y").exists());
}

#[test]
fn single_file_bind_creates_its_mount_point() {
    require_host!();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("app.conf");
    std::fs::write(&file, "rendered\n").expect("write");
    let mut s = spec("cat /srv/app/app.conf");
    s.mounts = vec![MountReq::bind("/srv/app/app.conf", &file, true)];
    let (exit, out) = run(&s);
    assert_eq!(exit, Exit::Code(0), "{out}");
    assert_eq!(out, "rendered\n");
}

#[test]
fn missing_target_under_read_only_host_folder_fails_clearly() {
    require_host!();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = spec("true");
    s.mounts = vec![MountReq::bind("/usr/ctt-nonexistent", dir.path(), false)];
    let err = spawn(&s, Stdio::inherit()).expect_err("must fail");
    let msg = err.to_string();
    assert!(msg.contains("create mount point /usr/ctt-nonexistent"), "{msg}");
    assert!(msg.contains("Read-only file system"), "{msg}");
    assert!(!Path::new("/usr/ctt-nonexistent").exists(), "created on the host!");
}

#[test]
fn dev_has_exactly_the_minimal_set() {
    require_host!();
    let (exit, out) = run(&spec(
        "ls -A /dev; echo ---; ls -A /dev/pts; echo ---; readlink /dev/ptmx; \
         echo x > /dev/null && head -c 4 /dev/zero | wc -c && head -c 4 /dev/urandom | wc -c; \
         echo y > /dev/full 2>/dev/null || echo full-enospc; touch /dev/shm/a && echo shm-rw",
    ));
    assert_eq!(exit, Exit::Code(0), "{out}");
    let parts: Vec<&str> = out.split("---\n").collect();
    let dev: BTreeSet<&str> = parts[0].lines().collect();
    let want: BTreeSet<&str> =
        ["fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"]
            .into();
    assert_eq!(dev, want);
    assert_eq!(lines(parts[1]), ["ptmx"], "a fresh devpts instance");
    assert_eq!(lines(parts[2]), ["pts/ptmx", "4", "4", "full-enospc", "shm-rw"]);
}

#[test]
fn extra_device_is_bound() {
    require_host!();
    if !Path::new("/dev/net/tun").exists() {
        support::tier::skip("/dev/net/tun on this host");
        return;
    }
    let mut s = spec("test -c /dev/net/tun && echo tun");
    s.devices = vec!["/dev/net/tun".into()];
    let (exit, out) = run(&s);
    assert_eq!(exit, Exit::Code(0), "{out}");
    assert_eq!(out, "tun\n");
}

#[test]
fn proc_masked_and_read_only_paths() {
    require_host!();
    // runc's masked files, as far as this kernel has them: each must read empty.
    let files: Vec<&str> = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug"]
        .into_iter()
        .filter(|p| Path::new(p).exists())
        .collect();
    assert!(!files.is_empty(), "no masked file exists on this host");
    let reads: String = files.iter().map(|f| format!("wc -c < {f}; ")).collect();
    let (exit, out) = run(&spec(&format!(
        "{reads} ls -A /proc/acpi 2>/dev/null | wc -l; \
         {{ echo other > /proc/sys/kernel/hostname; }} 2>/dev/null && echo sys-rw || echo sys-ro; \
         grep -q ' /proc/sys ro,' /proc/self/mountinfo && echo sys-mount-ro; \
         {{ echo 1 > /proc/irq/x; }} 2>/dev/null || echo irq-ro"
    )));
    assert_eq!(exit, Exit::Code(0), "{out}");
    let mut want: Vec<&str> = files.iter().map(|_| "0").collect();
    want.extend(["0", "sys-ro", "sys-mount-ro", "irq-ro"]);
    assert_eq!(lines(&out), want);
}

#[test]
fn sys_is_read_only_and_net_has_only_lo() {
    require_host!();
    let (exit, out) = run(&spec(
        "touch /sys/x 2>/dev/null && echo sys-rw || echo sys-ro; \
         grep -q ' /sys ro,' /proc/self/mountinfo && echo sys-mount-ro; \
         ls /sys/class/net; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; \
         ls -A /sys/firmware | wc -l",
    ));
    assert_eq!(exit, Exit::Code(0), "{out}");
    assert_eq!(lines(&out), ["sys-ro", "sys-mount-ro", "lo", "lo", "0"]);
}

#[test]
fn host_net_binds_sys_read_only() {
    require_host!();
    let mut s = spec("touch /sys/x 2>/dev/null && echo sys-rw || echo sys-ro; readlink /proc/self/ns/net");
    s.net = NetNs::Host;
    let (exit, out) = run(&s);
    assert_eq!(exit, Exit::Code(0), "{out}");
    let host_net = std::fs::read_link("/proc/self/ns/net").expect("host netns");
    assert_eq!(lines(&out), ["sys-ro", host_net.to_str().expect("utf8")]);
}

#[test]
fn namespaces_differ_from_the_host() {
    require_host!();
    let kinds = ["ipc", "uts", "net", "mnt", "pid", "cgroup"];
    let script: String = kinds.iter().map(|k| format!("readlink /proc/self/ns/{k}; ")).collect();
    let (exit, out) = run(&spec(&script));
    assert_eq!(exit, Exit::Code(0), "{out}");
    for (k, inside) in kinds.iter().zip(out.lines()) {
        let host = std::fs::read_link(format!("/proc/self/ns/{k}")).expect("host ns");
        assert!(inside.starts_with(&format!("{k}:[")), "{inside}");
        assert_ne!(inside, host.to_str().expect("utf8"), "{k} namespace is shared");
    }
}

#[test]
fn no_fd_leaks_into_the_container() {
    require_host!();
    // An fd without O_CLOEXEC: a plain fork+exec would hand it to the program.
    // SAFETY: a static NUL-terminated path; the fd returned is ours (closed below).
    let leaked = unsafe { libc::open(c"/etc/hostname".as_ptr(), libc::O_RDONLY) };
    assert!(leaked >= 0);
    let (exit, out) = run(&spec("ls /proc/self/fd"));
    // SAFETY: `leaked` is the fd opened above; nothing else owns or closes it.
    unsafe { libc::close(leaked) };
    assert_eq!(exit, Exit::Code(0), "{out}");
    // 0 1 2 plus the directory fd ls itself opened to list.
    let fds: Vec<&str> = out.lines().collect();
    assert_eq!(fds, ["0", "1", "2", "3"], "leaked fd {leaked}?");
}

#[test]
fn passed_fds_land_at_three_to_five_and_nothing_else_leaks() {
    require_host!();
    let out = tempfile::tempfile().expect("tempfile");
    let stdio = Stdio {
        stdin: None,
        stdout: Some(OwnedFd::from(out.try_clone().expect("dup"))),
        stderr: Some(OwnedFd::from(out.try_clone().expect("dup"))),
    };
    // Fd 3 and fd 5, nothing at 4: the runtime passes PID 1 its config, its cgroup
    // folder and its readiness pipe so.
    let three = OwnedFd::from(File::open("/etc/hostname").expect("open"));
    let five = OwnedFd::from(File::open("/proc/version").expect("open"));
    let s = spec("readlink /proc/self/fd/3 /proc/self/fd/5; exec ls /proc/self/fd");
    let pending = spawn_passing_fds(&s, stdio, [Some(three), None, Some(five)]).expect("spawn");
    let exit = pending.release().expect("release").wait().expect("wait");
    let text = std::fs::read_to_string(fd_path(&out)).expect("read output");
    assert_eq!(exit, Exit::Code(0), "{text}");
    // ls lists its own directory fd (4, the lowest free) besides 0-3 and 5.
    assert_eq!(lines(&text), ["/etc/hostname", "/proc/version", "0", "1", "2", "3", "4", "5"], "{text}");
}

#[test]
fn child_waits_for_release() {
    require_host!();
    let vol = tempfile::tempdir().expect("tempdir");
    let mut s = spec("touch /data/started");
    s.mounts = vec![MountReq::bind("/data", vol.path(), false)];
    let pending = spawn(&s, Stdio::inherit()).expect("spawn");
    assert!(pending.pid() > 0);
    // The netns exists already, so the executor could configure it now.
    let ns = std::fs::read_link(format!("/proc/{}/ns/net", pending.pid())).expect("child netns");
    assert_ne!(ns, std::fs::read_link("/proc/self/ns/net").expect("host netns"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!vol.path().join("started").exists(), "ran before release");
    let mut child = pending.release().expect("release");
    assert_eq!(child.wait().expect("wait"), Exit::Code(0));
    assert!(vol.path().join("started").exists());
}

#[test]
fn dropping_pending_kills_the_child() {
    require_host!();
    let vol = tempfile::tempdir().expect("tempdir");
    let mut s = spec("touch /data/started");
    s.mounts = vec![MountReq::bind("/data", vol.path(), false)];
    let pending = spawn(&s, Stdio::inherit()).expect("spawn");
    let pid = pending.pid();
    drop(pending);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists() || {
            // The pid may have been reused already; then it is not our zombie.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            !stat.contains("(sh)") && !stat.contains(" Z ")
        }
    );
    assert!(!vol.path().join("started").exists());
}

#[test]
fn exec_failure_is_reported() {
    require_host!();
    let s = SandboxSpec::new("ctt-box", RootFs::Host, Program::Path(vec!["/nonexistent/prog".into()]));
    let pending = spawn(&s, Stdio::inherit()).expect("spawn");
    let err = pending.release().expect_err("exec must fail");
    let msg = err.to_string();
    assert!(msg.contains("exec /nonexistent/prog"), "{msg}");
    assert!(msg.contains("No such file"), "{msg}");
}

/// Run inside a container by `self_exe_runs_from_a_sealed_memfd`; a no-op otherwise.
#[test]
fn self_exe_probe() {
    if std::env::var_os(PROBE_ENV).is_none() {
        return;
    }
    let exe = std::fs::read_link("/proc/1/exe").expect("readlink /proc/1/exe");
    println!("EXE={}", exe.display());
    println!("PID={}", std::process::id());
    match std::fs::OpenOptions::new().write(true).open("/proc/1/exe") {
        Err(e) => println!("OPENW=denied {e}"),
        Ok(mut f) => {
            use std::io::Write;
            match f.write_all(b"x") {
                Err(e) => println!("OPENW=denied write {e}"),
                Ok(()) => println!("OPENW=WRITABLE"),
            }
        }
    }
}

#[test]
fn self_exe_runs_from_a_sealed_memfd() {
    require_host!();
    let mut s = SandboxSpec::new(
        "ctt-box",
        RootFs::Host,
        Program::SelfExe(vec![
            "container-probe".into(),
            "--exact".into(),
            "self_exe_probe".into(),
            "--nocapture".into(),
            "--test-threads=1".into(),
        ]),
    );
    s.env.insert(PROBE_ENV.into(), "1".into());
    let (exit, out) = run(&s);
    assert_eq!(exit, Exit::Code(0), "{out}");
    assert!(out.contains("EXE=/memfd:container-self"), "{out}");
    assert!(out.contains("PID=1\n"), "{out}");
    assert!(out.contains("OPENW=denied"), "{out}");
    assert!(!out.contains("WRITABLE"), "{out}");
}

/// Run inside a container by `exe_runs_through_a_read_only_detached_mount`, as PID 1
/// from a copy of this test binary; a no-op otherwise. Tries every way a container
/// root could get write access to the host file behind `/proc/1/exe`.
#[test]
fn exe_probe() {
    if std::env::var_os(PROBE_ENV).is_none() {
        return;
    }
    let errno = || std::io::Error::last_os_error();
    println!("PID={}", std::process::id());
    println!("EXE={}", std::fs::read_link("/proc/1/exe").expect("readlink /proc/1/exe").display());
    let open_w = |label: &str| match std::fs::OpenOptions::new().write(true).open("/proc/1/exe") {
        Err(e) => println!("{label}=denied {e}"),
        Ok(_) => println!("{label}=WRITABLE"),
    };
    open_w("OPENW");
    // The mount behind /proc/1/exe, made writable again by a root with CAP_SYS_ADMIN?
    // SAFETY: a static NUL-terminated path; O_PATH only names the file.
    let path = unsafe { libc::open(c"/proc/1/exe".as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    assert!(path >= 0, "open O_PATH: {}", errno());
    let attr: [u64; 4] = [0, 1 /* attr_clr = MOUNT_ATTR_RDONLY */, 0, 0];
    // SAFETY: `attr` is a live 32-byte `struct mount_attr` (four u64) the kernel only
    // reads; the empty path is a static C string and `path` the fd opened above.
    let r = unsafe {
        libc::syscall(libc::SYS_mount_setattr, path, c"".as_ptr(), libc::AT_EMPTY_PATH, attr.as_ptr(), 32usize)
    };
    println!("SETATTR={}", if r == 0 { "CHANGED".to_string() } else { format!("denied {}", errno()) });
    // A new (writable) clone of that mount?
    let flags = 1 /* OPEN_TREE_CLONE */ | libc::O_CLOEXEC as u32 | libc::AT_EMPTY_PATH as u32;
    // SAFETY: integers, a static empty C string and the fd opened above; a returned
    // fd is only leaked into this short-lived probe process.
    let r = unsafe { libc::syscall(libc::SYS_open_tree, path, c"".as_ptr(), flags) };
    println!("CLONE={}", if r >= 0 { "CLONED".to_string() } else { format!("denied {}", errno()) });
    open_w("OPENW2");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    println!("MOUNTS={}", mounts.lines().count());
    println!("WRITE_SEEN={}", mounts.contains("ctt-exe"));
}

#[test]
fn exe_runs_through_a_read_only_detached_mount() {
    require_host!();
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = dir.path().join("ctt-exe");
    std::fs::copy(std::env::current_exe().expect("current_exe"), &exe).expect("copy the test binary");
    let original = std::fs::read(&exe).expect("read copy");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mut s = SandboxSpec::new(
        "ctt-box",
        RootFs::Host,
        Program::Exe {
            path: exe.clone(),
            argv: ["ctt-probe", "--exact", "exe_probe", "--nocapture", "--test-threads=1"].map(String::from).into(),
        },
    );
    s.env.insert(PROBE_ENV.into(), "1".into());
    let (exit, out) = run(&s);
    assert_eq!(exit, Exit::Code(0), "{out}");
    assert!(out.contains("PID=1\n"), "{out}");
    // Not a memfd copy: the file itself, named by its path in the detached mount.
    assert!(out.contains("EXE=/ctt-exe\n"), "{out}");
    // Running, the file is busy; the read-only mount is checked below, after exit.
    assert!(out.contains("OPENW=denied"), "{out}");
    // The mount belongs to no namespace: nothing can reach it to remount or clone it.
    assert!(out.contains("SETATTR=denied Invalid argument"), "{out}");
    assert!(out.contains("CLONE=denied Invalid argument"), "{out}");
    assert!(out.contains("OPENW2=denied"), "{out}");
    assert!(out.contains("WRITE_SEEN=false"), "{out}");
    assert!(!out.contains("WRITABLE") && !out.contains("CHANGED") && !out.contains("CLONED"), "{out}");
    assert!(std::fs::read(&exe).expect("read copy") == original, "the host file changed");
    assert_eq!(std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo"), mountinfo);
}

#[test]
fn exe_mount_is_invisible_to_the_host_and_shared_by_containers() {
    require_host!();
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = dir.path().join("ctt-sleep");
    std::fs::copy("/bin/sleep", &exe).expect("copy /bin/sleep");
    let original = std::fs::read(&exe).expect("read copy");
    let before = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let spec = SandboxSpec::new(
        "ctt-box",
        RootFs::Host,
        Program::Exe { path: exe.clone(), argv: vec!["sleep".into(), "30".into()] },
    );
    let mut children: Vec<InitProcess> =
        (0..2).map(|_| spawn(&spec, Stdio::inherit()).expect("spawn").release().expect("release")).collect();
    let during = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let names: Vec<_> =
        children.iter().map(|c| std::fs::read_link(format!("/proc/{}/exe", c.pid)).expect("readlink")).collect();
    // Both run the very same inode (shared page cache), not a copy.
    use std::os::unix::fs::MetadataExt;
    let inodes: Vec<u64> =
        children.iter().map(|c| std::fs::metadata(format!("/proc/{}/exe", c.pid)).expect("stat").ino()).collect();
    // CVE-2019-5736's trick: keep an O_PATH handle on PID 1's exe, wait until it no
    // longer runs (no more ETXTBSY), reopen the handle for writing.
    let handle = File::from(
        nix::fcntl::open(
            format!("/proc/{}/exe", children[0].pid).as_str(),
            nix::fcntl::OFlag::O_PATH,
            nix::sys::stat::Mode::empty(),
        )
        .expect("O_PATH /proc/<pid>/exe"),
    );
    for c in &children {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.pid), nix::sys::signal::Signal::SIGKILL).expect("kill");
    }
    for c in &mut children {
        assert_eq!(c.wait().expect("wait"), Exit::Signal(libc::SIGKILL));
    }
    let reopened = std::fs::OpenOptions::new().write(true).open(fd_path(&handle)).map(|_| ());
    let e = reopened.expect_err("the exe of a finished PID 1 reopened for writing");
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    assert_eq!(during, before, "a detached mount showed up in the host's mount table");
    assert_eq!(names, [Path::new("/ctt-sleep"), Path::new("/ctt-sleep")]);
    let ino = std::fs::metadata(&exe).expect("stat").ino();
    assert_eq!(inodes, [ino, ino]);
    assert!(std::fs::read(&exe).expect("read copy") == original, "the host file changed");
    assert_eq!(std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo"), before);
}

#[test]
fn exe_that_is_not_a_file_is_refused() {
    let s = SandboxSpec::new("ctt-box", RootFs::Host, Program::Exe { path: "/usr".into(), argv: vec!["x".into()] });
    let err = spawn(&s, Stdio::inherit()).expect_err("a directory cannot be exec'd");
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let s = SandboxSpec::new(
        "ctt-box",
        RootFs::Host,
        Program::Exe { path: "/nonexistent/ctt".into(), argv: vec!["x".into()] },
    );
    let err = spawn(&s, Stdio::inherit()).expect_err("missing program");
    assert!(err.to_string().contains("/nonexistent/ctt"), "{err}");
}

/// `container-init` as PID 1 (as containers run it): reads its config, runs the
/// service, and a SIGTERM from the host stops it cleanly.
#[test]
fn container_init_supervises_as_pid_1() {
    require_host!();
    use container::exec::supervisor::{read_status, ServiceState, SupervisorConfig};
    use container::plan::types::ServiceRes;
    let state = tempfile::tempdir().expect("tempdir");
    let mut cfg = SupervisorConfig::new("/state/run");
    let svc = "echo pid1=$(cat /proc/1/comm) > /state/seen; exec sleep 60";
    cfg.services.insert("hello".into(), ServiceRes::new(&["/bin/sh", "-c", svc]));
    std::fs::write(state.path().join("supervisor.json"), serde_json::to_vec(&cfg).expect("json")).expect("write");
    let init = env!("CARGO_BIN_EXE_container-init");
    let argv = vec!["container-init".into(), "/state/supervisor.json".into()];
    let mut s = SandboxSpec::new("ctt-init", RootFs::Host, Program::Exe { path: init.into(), argv });
    s.mounts = vec![MountReq::bind("/state", state.path(), false)];
    let log = tempfile::tempfile().expect("tempfile");
    let stdio = Stdio {
        stdin: None,
        stdout: Some(OwnedFd::from(log.try_clone().expect("dup"))),
        stderr: Some(OwnedFd::from(log.try_clone().expect("dup"))),
    };
    let mut child = spawn(&s, stdio).expect("spawn").release().expect("release");
    let run_dir = state.path().join("run");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !(read_status(&run_dir).ok().and_then(|st| st.services.get("hello").map(|h| h.state))
        == Some(ServiceState::Ready)
        && state.path().join("seen").exists())
    {
        let text = std::fs::read_to_string(fd_path(&log)).unwrap_or_default();
        assert!(std::time::Instant::now() < deadline, "service never became ready: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.pid), nix::sys::signal::Signal::SIGTERM).expect("kill");
    let exit = child.wait().expect("wait");
    let text = std::fs::read_to_string(fd_path(&log)).unwrap_or_default();
    assert_eq!(exit, Exit::Code(0), "a clean stop exits 0: {text}");
    let seen = std::fs::read_to_string(state.path().join("seen")).expect("seen");
    assert!(seen.starts_with("pid1=container-init"), "{seen}");
}

#[test]
fn dir_root_is_bound_as_the_root() {
    require_host!();
    let root = tempfile::tempdir().expect("tempdir");
    for d in ["proc", "sys", "dev", "usr"] {
        std::fs::create_dir(root.path().join(d)).expect("mkdir");
    }
    for (l, t) in [("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")] {
        std::os::unix::fs::symlink(t, root.path().join(l)).expect("symlink");
    }
    std::fs::write(root.path().join("marker"), "in the dir root\n").expect("write");
    let mut s = SandboxSpec::new(
        "ctt-dir",
        RootFs::Dir(root.path().into()),
        sh("cat /marker; touch /y 2>/dev/null || echo ro"),
    );
    s.mounts = vec![MountReq::bind("/usr", "/usr", true)];
    let (exit, out) = run(&s);
    assert_eq!(exit, Exit::Code(0), "{out}");
    assert_eq!(lines(&out), ["in the dir root", "ro"]);
}

#[test]
fn user_namespace_maps_root() {
    require_host!();
    let mut s = spec("id -u; cat /proc/self/uid_map | tr -s ' '; touch /tmp/a && stat -c %u /tmp/a");
    s.user_ns = Some(IdMap {
        uids: vec![IdRange { inside: 0, outside: 200000, count: 65536 }],
        gids: vec![IdRange { inside: 0, outside: 200000, count: 65536 }],
    });
    let (exit, out) = run(&s);
    assert_eq!(exit, Exit::Code(0), "{out}");
    assert_eq!(lines(&out), ["0", " 0 200000 65536", "0"]);
}

#[test]
fn no_mounts_leak_into_the_host() {
    require_host!();
    let before = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let vol = tempfile::tempdir().expect("tempdir");
    let mut s = spec("true");
    s.mounts = vec![MountReq::bind("/data", vol.path(), false), MountReq::tmpfs("/scratch")];
    for _ in 0..3 {
        let (exit, out) = run(&s);
        assert_eq!(exit, Exit::Code(0), "{out}");
    }
    let after = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert_eq!(before, after);
}

#[test]
fn symlinks_in_a_dir_root_cannot_reach_the_host() {
    require_host!();
    let host = tempfile::tempdir().expect("tempdir");
    let root = tempfile::tempdir().expect("tempdir");
    for d in ["proc", "sys", "dev", "usr"] {
        std::fs::create_dir(root.path().join(d)).expect("mkdir");
    }
    for (l, t) in [("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")] {
        std::os::unix::fs::symlink(t, root.path().join(l)).expect("symlink");
    }
    // An absolute symlink in the image pointing at a host folder.
    std::os::unix::fs::symlink(host.path(), root.path().join("link")).expect("symlink");
    // Inside the root the link resolves to root/<host path>.
    let inside = root.path().join(host.path().strip_prefix("/").expect("absolute"));
    std::fs::create_dir_all(&inside).expect("mkdir");
    let mut s = SandboxSpec::new("ctt-dir", RootFs::Dir(root.path().into()), sh("true"));
    s.mounts = vec![MountReq::bind("/usr", "/usr", true), MountReq::tmpfs("/link/sub")];
    let (exit, out) = run(&s);
    assert_eq!(exit, Exit::Code(0), "{out}");
    assert!(!host.path().join("sub").exists(), "mount point created on the host");
    assert!(inside.join("sub").is_dir(), "resolved inside the root");
}

/// The runtime's containers (`container apply`) run `container-init` (built next to
/// `container`) as PID 1 through the read-only mount, not a copy of `container`.
#[test]
fn runtime_pid1_is_container_init() {
    require_host!();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("state");
    let spec = dir.path().join("ctt-init-rt.toml");
    std::fs::write(
        &spec,
        "name = \"ctt-init-rt\"\nbase = \"host\"\n[network]\nmode = \"none\"\n\
         [processes.main]\ncommand = [\"/bin/sleep\", \"infinity\"]\nrestart = \"no\"\n",
    )
    .expect("write spec");
    let container = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_container"))
            .arg("--root")
            .arg(&root)
            .args(args)
            .output()
            .expect("run container");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    let (ok, out) = container(&["apply", spec.to_str().expect("utf8")]);
    let run: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("containers/ctt-init-rt/run.json")).unwrap_or_else(|_| b"{}".to_vec()),
    )
    .expect("run.json");
    let pid = run["pid"].as_i64().unwrap_or(0);
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let (destroyed, dout) = container(&["destroy", "ctt-init-rt"]);
    assert!(ok, "apply failed: {out}");
    assert!(destroyed, "destroy failed: {dout}");
    assert_eq!(exe.as_deref(), Some(Path::new("/container-init")), "{out}");
    assert_eq!(comm, "container-init\n");
}

/// A volume folder (`MountReq::volume`) is resolved beneath the volumes folder
/// without following a symlink: a nested volume's folder lies in its outer volume,
/// which the container owns, so its root (or a service user owning the outer
/// volume) can plant a symlink there. Both a symlinked folder on the way and a
/// symlinked last name are refused and nothing of the host is bound.
#[test]
fn a_volume_under_or_as_a_symlink_is_refused_and_binds_nothing_of_the_host() {
    require_host!();
    let host = tempfile::Builder::new().prefix("ct-victim").tempdir().expect("tempdir");
    std::fs::create_dir(host.path().join("deep")).expect("mkdir");
    std::fs::write(host.path().join("hostfile"), "host\n").expect("write");
    std::fs::write(host.path().join("deep/hostfile"), "host\n").expect("write");
    let vols = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(vols.path().join("data")).expect("mkdir");
    std::os::unix::fs::symlink(host.path(), vols.path().join("data/sub")).expect("symlink on the way");
    std::os::unix::fs::symlink(host.path(), vols.path().join("data/top")).expect("symlink as the folder");
    for volume in ["data/sub/deep", "data/top"] {
        let mut s = spec("ls -A /srv/v");
        s.mounts = vec![MountReq::volume("/srv/v", vols.path(), volume, false)];
        let seen = match spawn(&s, Stdio::inherit()) {
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(volume) && msg.contains("symlink"), "{volume}: {msg}");
                continue;
            }
            Ok(p) => {
                drop(p);
                "spawned"
            }
        };
        panic!("the volume {volume} through a symlink was accepted ({seen})");
    }
    // A plain volume beneath the same folder works, and what is given is a folder.
    std::fs::create_dir_all(vols.path().join("data/own")).expect("mkdir");
    std::fs::write(vols.path().join("data/own/mine"), "x").expect("write");
    let mut s = spec("ls -A /srv/v");
    s.mounts = vec![MountReq::volume("/srv/v", vols.path(), "data/own", false)];
    let (exit, out) = run(&s);
    assert_eq!((exit, out.as_str()), (Exit::Code(0), "mine\n"));
    let mut s = spec("true");
    s.mounts = vec![MountReq::volume("/srv/v", vols.path(), "../escape", false)];
    assert!(spawn(&s, Stdio::inherit()).is_err(), "a path that climbs out was accepted");
    assert_eq!(listing(host.path()), ["deep", "hostfile"], "something was made in the host folder");
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).expect("read").map(|e| e.expect("entry").file_name().to_string_lossy().into()).collect();
    v.sort();
    v
}

/// The swap after every check: while containers start, another thread (as a
/// process of a running container would) keeps exchanging a nested volume's folder
/// with a symlink to a host folder (`renameat2(RENAME_EXCHANGE)`, atomic). Whatever
/// the moment the sandbox looks, the host folder is never bound: each start either
/// is refused or binds the real folder. (A sandbox that opens its sources by path,
/// following symlinks, binds the host folder in many of the starts.)
#[test]
fn a_volume_swapped_for_a_symlink_while_the_sandbox_starts_is_never_bound() {
    require_host!();
    let host = tempfile::Builder::new().prefix("ct-victim").tempdir().expect("tempdir");
    std::fs::write(host.path().join("hostfile"), "host\n").expect("write");
    let vols = tempfile::tempdir().expect("tempdir");
    let data = vols.path().join("data");
    std::fs::create_dir_all(data.join("sub")).expect("mkdir");
    std::fs::write(data.join("sub/own"), "x").expect("write");
    std::os::unix::fs::symlink(host.path(), data.join("sub.swap")).expect("symlink");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, dir) = (stop.clone(), File::open(&data).expect("open data"));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                nix::fcntl::renameat2(&dir, "sub", &dir, "sub.swap", nix::fcntl::RenameFlags::RENAME_EXCHANGE)
                    .expect("exchange");
                n += 1;
                std::thread::yield_now();
            }
            n
        })
    };
    let (mut bound, mut refused) = (0, 0);
    let mut leaks = Vec::new();
    // A refused start is quick, one that binds takes a few ms: go on until enough
    // have bound (or for 30 s at most).
    let started = std::time::Instant::now();
    while bound + leaks.len() < 60 && started.elapsed() < Duration::from_secs(30) {
        let mut s = spec("ls -A /srv/v");
        s.mounts = vec![MountReq::volume("/srv/v", vols.path(), "data/sub", false)];
        let out = tempfile::tempfile().expect("tempfile");
        let stdio = Stdio { stdin: None, stdout: Some(OwnedFd::from(out.try_clone().expect("dup"))), stderr: None };
        match spawn(&s, stdio) {
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("symlink") || msg.contains("Too many levels") || msg.contains("No such file"),
                    "refused for another reason: {msg}"
                );
                refused += 1;
            }
            Ok(p) => {
                let mut child = p.release().expect("release");
                assert_eq!(child.wait().expect("wait"), Exit::Code(0));
                let seen = std::fs::read_to_string(fd_path(&out)).expect("read output");
                if seen.contains("hostfile") {
                    leaks.push(seen);
                } else {
                    assert_eq!(seen, "own\n");
                    bound += 1;
                }
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().expect("swapper");
    eprintln!("{swaps} swaps: {bound} bound the volume, {refused} refused, {} bound the host folder", leaks.len());
    assert!(leaks.is_empty(), "the host folder was bound {} times ({bound} fine, {refused} refused)", leaks.len());
    assert!(
        swaps > 100 && bound > 0 && refused > 0,
        "the race did not happen: {swaps} swaps, {bound} bound, {refused} refused"
    );
    assert_eq!(listing(host.path()), ["hostfile"]);
}

/// A layer being built (`RootFs::Build`): writes land in the host's upper folder
/// (deletions as whiteouts), the lower layer and the host stay as they were, the
/// build's capability set holds, and a mount is refused. The host's root is the
/// lowest layer (for /bin/sh), so the folders live on another file system (/dev/shm:
/// overlayfs refuses an upper folder inside a lower layer).
#[test]
fn a_build_root_writes_into_its_upper_folder_only() {
    require_host!();
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir_in("/dev/shm").expect("tempdir");
    let (lower, upper, work) = (dir.path().join("l"), dir.path().join("b/root"), dir.path().join("b/work"));
    for d in [&lower, &upper, &work] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(lower.join("lowerfile"), "lower\n").expect("write");
    let root = RootFs::Build { lower: vec![lower.clone(), "/".into()], upper: upper.clone(), work };
    let mut s = SandboxSpec::new(
        "ctt-build",
        root,
        sh("echo new > /built && rm /lowerfile && grep CapEff /proc/self/status && \
            if mount -t tmpfs none /mnt 2>/dev/null; then echo mounted; else echo nomount; fi"),
    );
    s.readonly_root = false;
    s.die_with_parent = true;
    s.hardening = Some(container::exec::harden::Hardening::for_build().expect("filter"));
    let (exit, out) = run(&s);
    assert_eq!(exit, Exit::Code(0), "{out}");
    let caps = container::vocab::caps::build_set();
    assert_eq!(lines(&out), [format!("CapEff:\t{caps:016x}").as_str(), "nomount"]);
    assert_eq!(std::fs::read_to_string(upper.join("built")).expect("upper/built"), "new\n");
    let whiteout = std::fs::symlink_metadata(upper.join("lowerfile")).expect("a whiteout");
    assert!(whiteout.file_type().is_char_device(), "{whiteout:?}");
    assert_eq!(std::fs::read_to_string(lower.join("lowerfile")).expect("lower"), "lower\n");
    assert!(!Path::new("/built").exists(), "a write reached the host's root");
}
