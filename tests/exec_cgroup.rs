//! Real cgroups (root only): each test makes its own container cgroups named
//! `t-cg-<pid>-<n>` and a `Guard` removes them (killing what is inside) even when an
//! assertion fails. Expectations come from this host's own hierarchies, so the tests
//! hold on hybrid, pure cgroup2 and v1-only hosts alike. Host tier (`require_host!`).

mod support;
use container::exec::cgroup::{discover, Cgroups, Hierarchy, Version, PARENT};
use container::plan::types::LimitsRes;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique() -> String {
    format!("t-cg-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Removes the cgroups and reaps our children whatever happens in the test.
struct Guard {
    cg: Cgroups,
    children: Vec<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.cg.remove();
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn hierarchies() -> Vec<Hierarchy> {
    discover().expect("read mountinfo")
}

/// Where the host keeps `controller`: its v1 hierarchy, else cgroup2 if it offers it.
fn home_of(hs: &[Hierarchy], controller: &str) -> Option<Hierarchy> {
    let has = |h: &&Hierarchy| h.controllers.iter().any(|c| c == controller);
    let v1 = hs.iter().filter(|h| h.version == Version::V1).find(has);
    v1.or_else(|| hs.iter().filter(|h| h.version == Version::V2).find(has)).cloned()
}

/// The limit file of `controller` for container `name`, or None when the host lacks it.
fn limit_file(hs: &[Hierarchy], name: &str, controller: &str) -> Option<PathBuf> {
    let h = home_of(hs, controller)?;
    let file = match (controller, h.version) {
        ("memory", Version::V1) => "memory.limit_in_bytes",
        ("memory", Version::V2) => "memory.max",
        ("pids", _) => "pids.max",
        ("cpu", Version::V1) => "cpu.shares",
        ("cpu", Version::V2) => "cpu.weight",
        _ => unreachable!(),
    };
    Some(h.mount.join(PARENT).join(name).join(file))
}

fn read(p: &PathBuf) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).trim().to_string()
}

/// No `container/<name>` is left in any hierarchy of the host.
fn assert_gone(name: &str) {
    for h in hierarchies() {
        let d = h.mount.join(PARENT).join(name);
        assert!(!d.exists(), "{} is left behind", d.display());
    }
}

#[test]
fn create_writes_the_limits_where_the_host_has_the_controllers() {
    require_host!();
    let name = unique();
    let hs = hierarchies();
    let limits = LimitsRes { memory: Some(64 << 20), pids: Some(32), cpu_weight: Some(200) };
    let (cg, warnings) = Cgroups::create(&name, &limits).expect("create");
    let guard = Guard { cg, children: vec![] };

    let expected = [("memory", "67108864"), ("pids", "32"), ("cpu", "2048")];
    for (controller, value) in expected {
        match limit_file(&hs, &name, controller) {
            Some(path) => {
                let want = if path.ends_with("cpu.weight") { "200" } else { value };
                assert_eq!(read(&path), want, "{}", path.display());
                assert!(!warnings.iter().any(|w| w.contains(&format!("`{controller}`"))), "{warnings:?}");
            }
            None => assert!(warnings.iter().any(|w| w.contains(&format!("`{controller}`"))), "{warnings:?}"),
        }
    }
    // Every cgroup is container/<name> of a host hierarchy, and the cgroup2 one (the
    // `unified` mount on a hybrid host) is among them when it exists.
    for d in guard.cg.dirs() {
        assert!(d.is_dir(), "{}", d.display());
        assert!(hs.iter().any(|h| *d == h.mount.join(PARENT).join(&name)), "{}", d.display());
    }
    if let Some(v2) = hs.iter().find(|h| h.version == Version::V2) {
        assert!(guard.cg.dirs().contains(&v2.mount.join(PARENT).join(&name)), "{:?}", guard.cg.dirs());
    }
    assert_eq!(Cgroups::open(&name).expect("open").dirs(), guard.cg.dirs(), "open finds what create made");

    guard.cg.remove().expect("remove");
    assert_gone(&name);
}

#[test]
fn a_child_is_tracked_and_remove_kills_it_and_every_directory() {
    require_host!();
    let name = unique();
    let hs = hierarchies();
    let limits = LimitsRes { memory: Some(64 << 20), ..Default::default() };
    let (cg, _) = Cgroups::create(&name, &limits).expect("create");
    let mut guard = Guard { cg, children: vec![] };
    guard.children.push(Command::new("sleep").arg("100").spawn().expect("spawn sleep"));
    let pid = guard.children[0].id() as i32;

    guard.cg.add(pid).expect("add");
    assert_eq!(guard.cg.pids(), [pid]);
    // The kernel agrees: the process is in container/<name> of every hierarchy used.
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read /proc/pid/cgroup");
    let suffix = format!("/{PARENT}/{name}");
    let inside = own.lines().filter(|l| l.ends_with(&suffix)).count();
    assert_eq!(inside, guard.cg.dirs().len(), "{own}");
    if home_of(&hs, "memory").is_some() {
        // Only Some: v1 does not move the charges a process made before it moved in,
        // so an already running `sleep` may well account 0 bytes there.
        assert!(guard.cg.memory_current().is_some(), "memory is accounted");
    }

    guard.cg.remove().expect("remove");
    let status = guard.children[0].wait().expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert_gone(&name);
    assert!(guard.cg.pids().is_empty());
    guard.cg.remove().expect("a second remove is fine");
    assert!(Cgroups::open(&name).expect("open").dirs().is_empty());
}

#[test]
fn the_pids_limit_stops_forks_and_remove_kills_the_orphans() {
    require_host!();
    let name = unique();
    if home_of(&hierarchies(), "pids").is_none() {
        eprintln!("no pids controller on this host: nothing to enforce");
        return;
    }
    const MAX: u32 = 5;
    let (cg, warnings) = Cgroups::create(&name, &LimitsRes { pids: Some(MAX), ..Default::default() }).expect("create");
    assert!(warnings.is_empty(), "{warnings:?}");
    let mut guard = Guard { cg, children: vec![] };
    // The shell waits for a line on stdin (the builtin `read`, no fork) so that it is
    // in the cgroup before it forks; then it starts at most 20 sleeps in the
    // background. Each fork past the limit fails, and dash exits on a failed fork.
    let script = "read go; n=0; while [ $n -lt 20 ]; do sleep 100 </dev/null >/dev/null 2>&1 & \
                  n=$((n+1)); echo $n; done; echo all-forked";
    let child = Command::new("/bin/sh")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    guard.cg.add(child.id() as i32).expect("add");
    guard.children.push(child);
    let mut stdin = guard.children[0].stdin.take().expect("stdin");
    stdin.write_all(b"go\n").expect("release the shell");
    drop(stdin);
    let out = guard.children.remove(0).wait_with_output().expect("wait for sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);

    // The shell itself counts, so MAX - 1 sleeps start and the next fork fails.
    let started: Vec<String> = (1..MAX).map(|n| n.to_string()).collect();
    assert_eq!(stdout.lines().collect::<Vec<_>>(), started, "stderr: {stderr}");
    assert!(!out.status.success(), "{:?}", out.status);
    assert!(stderr.to_lowercase().contains("fork"), "{stderr}");
    assert_eq!(guard.cg.pids().len(), MAX as usize - 1, "the sleeps stay, orphaned, in the cgroup");

    guard.cg.remove().expect("remove");
    assert!(guard.cg.pids().is_empty());
    assert_gone(&name);
}

#[test]
fn a_limit_without_its_controller_is_a_warning_not_an_error() {
    require_host!();
    let name = unique();
    // This host, minus every trace of the pids controller.
    let hs: Vec<Hierarchy> = hierarchies()
        .into_iter()
        .filter(|h| !(h.version == Version::V1 && h.controllers.iter().any(|c| c == "pids")))
        .map(|mut h| {
            h.controllers.retain(|c| c != "pids");
            h
        })
        .collect();
    let limits = LimitsRes { pids: Some(16), ..Default::default() };
    let (cg, warnings) = Cgroups::create_in(&hs, &name, &limits).expect("create without pids");
    let guard = Guard { cg, children: vec![] };
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("pids limit of 16 not applied: no usable `pids` cgroup controller"),
        "{warnings:?}"
    );
    // The container still gets its other cgroups, and no pids limit anywhere (a
    // cgroup2 parent may have pids enabled by someone else: then it reads "max").
    assert!(!guard.cg.dirs().is_empty() || hs.is_empty());
    for d in guard.cg.dirs() {
        assert!(d.is_dir(), "{}", d.display());
        let pids_max = d.join("pids.max");
        assert!(!pids_max.exists() || read(&pids_max) == "max", "{}", d.display());
    }
    guard.cg.remove().expect("remove");
    assert_gone(&name);
}

#[test]
fn without_cgroup2_remove_kills_pid_by_pid() {
    require_host!();
    let name = unique();
    // Only the v1 hierarchies: no cgroup.kill, so remove() must signal each process.
    let hs: Vec<Hierarchy> = hierarchies().into_iter().filter(|h| h.version == Version::V1).collect();
    let (cg, _) = Cgroups::create_in(&hs, &name, &LimitsRes::default()).expect("create");
    let mut guard = Guard { cg, children: vec![] };
    if guard.cg.dirs().is_empty() {
        support::tier::skip("a v1 hierarchy with memory, pids or cpu on this host");
        return;
    }
    assert!(guard.cg.dirs().iter().all(|d| !d.join("cgroup.kill").exists()));
    for _ in 0..3 {
        let child = Command::new("sleep").arg("100").spawn().expect("spawn sleep");
        guard.cg.add(child.id() as i32).expect("add");
        guard.children.push(child);
    }
    assert_eq!(guard.cg.pids().len(), 3);

    guard.cg.remove().expect("remove");
    for c in &mut guard.children {
        assert_eq!(c.wait().expect("wait").signal(), Some(libc::SIGKILL));
    }
    assert!(Cgroups::open_in(&hs, &name).expect("open").dirs().is_empty());
    assert_gone(&name);
}

#[test]
fn create_again_resets_an_empty_leftover_and_refuses_a_busy_one() {
    require_host!();
    let name = unique();
    let hs = hierarchies();
    let (cg, _) = Cgroups::create(&name, &LimitsRes { pids: Some(32), ..Default::default() }).expect("create");
    let mut guard = Guard { cg, children: vec![] };

    // A leftover (e.g. after a crash) without processes is reused, its old limit reset.
    let (again, _) = Cgroups::create(&name, &LimitsRes { pids: Some(64), ..Default::default() })
        .expect("create over an empty leftover");
    assert_eq!(again.dirs(), guard.cg.dirs());
    if let Some(pids_max) = limit_file(&hs, &name, "pids") {
        assert_eq!(read(&pids_max), "64", "the limit was not rewritten");
    }
    // Without limits every hierarchy is still used (the cgroup namespace is rooted at
    // the container's own cgroup in each): the leftover is reused, its limit reset.
    let (again_plain, _) = Cgroups::create(&name, &LimitsRes::default()).expect("create without limits");
    assert_eq!(again_plain.dirs(), again.dirs());
    if let Some(pids_max) = limit_file(&hs, &name, "pids") {
        assert_eq!(read(&pids_max), "max", "the stale limit was kept");
    }
    // The guard removes what exists now.
    guard.cg = Cgroups::open(&name).expect("open");

    // One with a process inside is not ours to take over, and is left untouched.
    let child = Command::new("sleep").arg("100").spawn().expect("spawn sleep");
    guard.cg.add(child.id() as i32).expect("add");
    guard.children.push(child);
    if !guard.cg.dirs().is_empty() {
        let err = Cgroups::create(&name, &LimitsRes::default()).expect_err("busy cgroup");
        assert!(err.to_string().contains("still has processes"), "{err}");
        assert_eq!(guard.cg.pids(), [guard.children[0].id() as i32]);
        assert!(guard.cg.dirs().iter().all(|d| d.is_dir()));
    }

    guard.cg.remove().expect("remove");
    assert_gone(&name);
}
