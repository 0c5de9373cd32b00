//! Cgroups: one cgroup per container in each hierarchy, with the plan's limits and
//! the device allow-list.
//!
//! Invariant: a container whose host key is `name` owns exactly the directories
//! `<mount>/container/<name>` (and anything its processes create below them) in the
//! hierarchies chosen by
//! [`layout`]: every cgroup v1 hierarchy (named ones such as `name=systemd` included),
//! plus the cgroup2 hierarchy if one is mounted (pure v2 host, or the `unified` mount
//! of a hybrid host). Nothing else under a hierarchy is created, written or removed,
//! except enabling controllers in `cgroup.subtree_control` of the cgroup2 mount and
//! of its `container` parent, and giving a v1 `cpuset` `container` parent the CPUs
//! and memory nodes of its own parent (a v1 cpuset starts empty and takes no process).
//! [`Cgroups::remove`] either leaves none of those directories and no process in them,
//! or returns an error naming what is left.
//!
//! Why every v1 hierarchy: the container's cgroup namespace is rooted, in each
//! hierarchy, at the cgroup its PID 1 is in when it unshares it. A hierarchy where the
//! container had no cgroup of its own would root the namespace at the host's cgroup
//! there (the hierarchy root, with its `release_agent`); with one in each, any
//! cgroupfs mounted from inside shows only the container's own subtree. Joining costs
//! nothing: the sandbox child writes `0` to each v1 `tasks` file while it is still
//! single-threaded, which the kernel does without the global threadgroup lock (the
//! RCU grace period that moving a process through `cgroup.procs` costs, ~10 ms), and
//! it is born in the cgroup2 one (`CLONE_INTO_CGROUP`); see `sandbox.rs`.
//!
//! Layouts: the hierarchies come from `/proc/self/mountinfo`, never from a guess
//! about `/sys/fs/cgroup`, so pure cgroup2, hybrid (v1 controllers plus cgroup2 at
//! `/sys/fs/cgroup/unified`, which crun refuses) and v1-only hosts all work. A
//! controller bound to a v1 hierarchy is absent from cgroup2's `cgroup.controllers`,
//! so each controller is used in exactly one place. A limit whose controller exists
//! nowhere (or cannot be enabled on cgroup2) becomes a warning, never an error: the
//! container still runs, only unlimited. Real errors (EACCES, EROFS, …) fail with the
//! path and value that could not be written.
//!
//! Limits: `memory` → v1 `memory.limit_in_bytes` / v2 `memory.max`; `pids` →
//! `pids.max`; `cpu_weight` (cgroup2 semantics, 1..=10000, default 100) → v2
//! `cpu.weight` / v1 `cpu.shares = weight * 1024 / 100` (default 1024), clamped to
//! the kernel's 2..=262144.
//!
//! Devices: where the v1 `devices` controller exists, the container's cgroup there
//! denies every device (`devices.deny a`) and allows, read/write/mknod as runc does,
//! only [`DEFAULT_DEVICES`] (null, zero, full, random, urandom, tty, ptmx, the pts)
//! plus the nodes the plan lists (their type and numbers taken from the host node).
//! Written on every create, so a reused cgroup never keeps a stale list. Without the
//! v1 controller (a pure cgroup2 host) the same list is a `BPF_CGROUP_DEVICE`
//! program attached to the container's cgroup2 cgroup ([`bpf`]); a kernel without
//! `bpf(2)`, or a host without either, gets a warning that no device policy applies.
//!
//! Processes: [`Cgroups::add`] moves a process into all of the container's cgroups;
//! do it before the process forks (children inherit their parent's cgroups) and
//! before it unshares its cgroup namespace (the namespace root is the cgroup it is
//! in at that moment). Writing `0` to each of [`Cgroups::procs_files`] from inside
//! a process moves that process itself.
//!
//! Names: the runtime passes the container's host key (`runtime::layout::StateRoot::
//! host_key`: its name under the default state root, `<name>_<root tag>` under any
//! other), so two roots' containers of one name never share, stop or remove each
//! other's cgroups. This module never sees the root.
//!
//! The executor is single-threaded, so waiting (for killed processes to leave a
//! cgroup) is bounded polling with backoff, never a thread and never a fixed sleep.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::plan::types::LimitsRes;

pub mod bpf;

/// Directory under each hierarchy's mount that holds every container's cgroup.
pub const PARENT: &str = "container";

/// The controllers this module writes limits to (or reads accounting from).
const MANAGED: [&str; 3] = ["memory", "pids", "cpu"];

/// v1 controllers a container's cgroup needs set up in: `devices` (the allow-list)
/// and `cpuset` (a new v1 cpuset has no CPUs and refuses processes).
const V1_SETUP: [&str; 2] = ["devices", "cpuset"];

/// How long [`Cgroups::remove`] keeps killing and retrying before giving up. Generous:
/// a loaded machine can take a while to tear down a process that holds much memory.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("invalid cgroup name {0:?}: expected a non-empty name of [A-Za-z0-9_-] (one path component)")]
    Name(String),
    #[error("invalid limit: {0}")]
    Limit(String),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot create cgroup {path}: {source}{hint}", hint = hint(source))]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot write {value:?} to {path}: {source}{hint}", hint = hint(source))]
    Write { path: PathBuf, value: String, source: io::Error },
    #[error("cannot remove cgroup {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
    #[error("cgroup {path} already exists and still has processes {pids:?}")]
    InUse { path: PathBuf, pids: Vec<i32> },
    #[error("cgroups of {name} still hold processes {pids:?} after SIGKILL and {secs}s of waiting")]
    Stuck { name: String, pids: Vec<i32>, secs: u64 },
    #[error("cannot SIGKILL pid {pid}: {source}")]
    Kill { pid: i32, source: Errno },
    #[error("refusing to move pid {0} into a container cgroup (must be a real process other than ourselves)")]
    Pid(i32),
    #[error("cannot allow device {path} in the container's device cgroup: {why}")]
    Device { path: PathBuf, why: String },
    #[error("refusing to kill the cgroups of {0}: this process itself is inside them")]
    SelfInside(String),
}

fn hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => " (cgroups need root and a writable /sys/fs/cgroup)",
        Some(libc::EROFS) => " (/sys/fs/cgroup is mounted read-only here)",
        _ => "",
    }
}

/// Cgroup version of a hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// One mounted cgroup hierarchy, as `/proc/self/mountinfo` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount: PathBuf,
    pub version: Version,
    /// v1: the controllers bound to it (from the super options). v2: the controllers
    /// available at its root (`cgroup.controllers`); the parser leaves this empty and
    /// [`discover`] fills it in.
    pub controllers: Vec<String>,
    /// v1 `name=` option (e.g. `systemd`), if any.
    pub name: Option<String>,
}

/// Where one of a container's cgroups goes and which managed controllers it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupTarget {
    pub mount: PathBuf,
    pub version: Version,
    pub controllers: Vec<&'static str>,
}

/// One entry of a device allow-list: a character or block device; `None` is any
/// number (`*`). Granted read, write and mknod (`rwm`), as runc does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    pub block: bool,
    pub major: Option<u32>,
    pub minor: Option<u32>,
}

impl DeviceRule {
    pub const fn char(major: u32, minor: u32) -> DeviceRule {
        DeviceRule { block: false, major: Some(major), minor: Some(minor) }
    }

    /// The rule for the host device node `path` (its type and numbers).
    pub fn of_node(path: &Path) -> Result<DeviceRule, CgroupError> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let bad = |why: String| CgroupError::Device { path: path.into(), why };
        let md = fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        let ft = md.file_type();
        if !ft.is_char_device() && !ft.is_block_device() {
            return Err(bad("not a device node".into()));
        }
        let rdev = md.rdev();
        Ok(DeviceRule { block: ft.is_block_device(), major: Some(libc::major(rdev)), minor: Some(libc::minor(rdev)) })
    }

    /// The line for v1 `devices.allow`, e.g. `c 136:* rwm`.
    pub fn v1_line(&self) -> String {
        let n = |x: Option<u32>| x.map_or("*".to_string(), |v| v.to_string());
        format!("{} {}:{} rwm", if self.block { 'b' } else { 'c' }, n(self.major), n(self.minor))
    }
}

/// The devices every container may use: null, zero, full, random, urandom, tty,
/// ptmx and every pts (its own devpts instance's nodes).
pub const DEFAULT_DEVICES: [DeviceRule; 8] = [
    DeviceRule::char(1, 3),
    DeviceRule::char(1, 5),
    DeviceRule::char(1, 7),
    DeviceRule::char(1, 8),
    DeviceRule::char(1, 9),
    DeviceRule::char(5, 0),
    DeviceRule::char(5, 2),
    DeviceRule { block: false, major: Some(136), minor: None },
];

/// Parse `/proc/self/mountinfo` into cgroup hierarchies, in mount order. A hierarchy
/// mounted twice (same device, e.g. a bind mount) is listed once, at its first mount.
pub fn parse_mountinfo(text: &str) -> Vec<Hierarchy> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        // id parent major:minor root mount-point options [optional…] - fstype source super-options
        let Some(sep) = fields.iter().skip(6).position(|f| *f == "-").map(|i| i + 6) else { continue };
        let (Some(fstype), Some(super_opts)) = (fields.get(sep + 1), fields.get(sep + 3)) else { continue };
        let version = match *fstype {
            "cgroup" => Version::V1,
            "cgroup2" => Version::V2,
            _ => continue,
        };
        if !seen.insert(fields[2]) {
            continue;
        }
        let mut controllers = Vec::new();
        let mut name = None;
        if version == Version::V1 {
            for opt in super_opts.split(',') {
                if let Some(n) = opt.strip_prefix("name=") {
                    name = Some(n.to_string());
                } else if !opt.contains('=') && !V1_FLAGS.contains(&opt) {
                    controllers.push(opt.to_string());
                }
            }
        }
        out.push(Hierarchy { mount: PathBuf::from(unescape(fields[4])), version, controllers, name });
    }
    out
}

/// Super options of a v1 cgroup mount that are not controller names.
const V1_FLAGS: [&str; 9] =
    ["rw", "ro", "none", "all", "noprefix", "xattr", "clone_children", "cpuset_v2_mode", "favordynmods"];

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The hierarchies of this host: mountinfo, plus each cgroup2 root's `cgroup.controllers`.
pub fn discover() -> Result<Vec<Hierarchy>, CgroupError> {
    let path = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(path).map_err(|source| CgroupError::Read { path: path.into(), source })?;
    let mut hs = parse_mountinfo(&text);
    for h in hs.iter_mut().filter(|h| h.version == Version::V2) {
        // Unreadable means no controllers to use there; the hierarchy still tracks processes.
        h.controllers = fs::read_to_string(h.mount.join("cgroup.controllers"))
            .map(|s| s.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
    }
    Ok(hs)
}

/// Decide where a container's cgroups go (pure). Each managed controller is used in
/// the v1 hierarchy that carries it, else in cgroup2 if available there. Every v1
/// hierarchy gets a cgroup, with or without a limit, so that the container's cgroup
/// namespace is rooted at its own cgroup in each (see the module docs); a target's
/// `controllers` also name `devices` (the allow-list is written there) and `cpuset`
/// (its CPUs and memory nodes must be filled in). The cgroup2 hierarchy gets one too,
/// whose `cgroup.kill` kills a whole container at once. On cgroup2, `memory` and
/// `pids` are always used when available (cheap accounting); `cpu` only for a
/// `cpu_weight`, because enabling it has costs and caveats (real-time tasks) that buy
/// nothing without a weight. Returns the targets and one warning per limit that no
/// controller can apply.
pub fn layout(hierarchies: &[Hierarchy], limits: &LimitsRes) -> (Vec<CgroupTarget>, Vec<String>) {
    let in_v1 = |c: &str| hierarchies.iter().any(|h| h.version == Version::V1 && h.controllers.iter().any(|x| x == c));
    let mut targets = Vec::new();
    for h in hierarchies {
        let controllers: Vec<&'static str> = match h.version {
            Version::V1 => {
                MANAGED.into_iter().chain(V1_SETUP).filter(|c| h.controllers.iter().any(|x| x == c)).collect()
            }
            Version::V2 => MANAGED
                .into_iter()
                .filter(|c| h.controllers.iter().any(|x| x == c) && !in_v1(c))
                .filter(|c| *c != "cpu" || limits.cpu_weight.is_some())
                .collect(),
        };
        // Only one cgroup2 hierarchy exists per system; a second cgroup2 entry would be
        // another device (a foreign mount) and is ignored.
        let wanted = match h.version {
            Version::V1 => true,
            Version::V2 => !targets.iter().any(|t: &CgroupTarget| t.version == Version::V2),
        };
        if wanted {
            targets.push(CgroupTarget { mount: h.mount.clone(), version: h.version, controllers });
        }
    }
    let has = |c: &str| targets.iter().any(|t| t.controllers.contains(&c));
    let mut warnings = Vec::new();
    for (controller, limit) in requested(limits) {
        if !has(controller) {
            warnings.push(missing(controller, &limit, "no cgroup hierarchy on this host provides it"));
        }
    }
    (targets, warnings)
}

/// The limits that are set, by controller, with a human-readable value.
fn requested(limits: &LimitsRes) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(m) = limits.memory {
        out.push(("memory", format!("memory limit of {m} bytes")));
    }
    if let Some(p) = limits.pids {
        out.push(("pids", format!("pids limit of {p}")));
    }
    if let Some(w) = limits.cpu_weight {
        out.push(("cpu", format!("cpu weight {w}")));
    }
    out
}

fn missing(controller: &str, limit: &str, why: &str) -> String {
    format!("{limit} not applied: no usable `{controller}` cgroup controller ({why})")
}

/// cgroup2 `cpu.weight` (1..=10000, default 100) → v1 `cpu.shares` (default 1024).
pub fn weight_to_shares(weight: u32) -> u64 {
    (u64::from(weight) * 1024 / 100).clamp(2, 262_144)
}

fn check_limits(limits: &LimitsRes) -> Result<(), CgroupError> {
    if limits.memory == Some(0) {
        return Err(CgroupError::Limit("memory must be at least 1 byte".into()));
    }
    if limits.pids == Some(0) {
        return Err(CgroupError::Limit("pids must be at least 1".into()));
    }
    if let Some(w) = limits.cpu_weight.filter(|w| !(1..=10_000).contains(w)) {
        return Err(CgroupError::Limit(format!("cpu weight {w} is outside 1..=10000")));
    }
    Ok(())
}

/// A name becomes one path component under `container/`: no `/`, no `.` at all (so
/// no `..` and no clash with interface files such as `memory.max`), not empty.
pub fn check_name(name: &str) -> Result<(), CgroupError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(CgroupError::Name(name.to_string()))
    }
}

/// The cgroups of one container: one directory per hierarchy used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroups {
    name: String,
    dirs: Vec<PathBuf>,
}

impl Cgroups {
    /// Create the container's cgroups (see [`layout`]), write the limits and the
    /// default device allow-list. Returns warnings for limits no controller can apply.
    /// An existing, empty cgroup of the same name (left by a crash) is reused; one
    /// with processes is an error.
    pub fn create(name: &str, limits: &LimitsRes) -> Result<(Cgroups, Vec<String>), CgroupError> {
        Self::create_with(name, limits, &[])
    }

    /// [`Cgroups::create`] whose device allow-list also grants the host device nodes
    /// `devices` (e.g. `/dev/net/tun`), by their type and numbers.
    pub fn create_with(
        name: &str,
        limits: &LimitsRes,
        devices: &[PathBuf],
    ) -> Result<(Cgroups, Vec<String>), CgroupError> {
        Self::create_in_with(&discover()?, name, limits, devices)
    }

    /// [`Cgroups::create`] on the given hierarchies.
    pub fn create_in(
        hierarchies: &[Hierarchy],
        name: &str,
        limits: &LimitsRes,
    ) -> Result<(Cgroups, Vec<String>), CgroupError> {
        Self::create_in_with(hierarchies, name, limits, &[])
    }

    /// [`Cgroups::create_with`] on the given hierarchies.
    pub fn create_in_with(
        hierarchies: &[Hierarchy],
        name: &str,
        limits: &LimitsRes,
        devices: &[PathBuf],
    ) -> Result<(Cgroups, Vec<String>), CgroupError> {
        check_name(name)?;
        check_limits(limits)?;
        let mut rules = DEFAULT_DEVICES.to_vec();
        for d in devices {
            rules.push(DeviceRule::of_node(d)?);
        }
        let (targets, mut warnings) = layout(hierarchies, limits);
        // A leftover in a hierarchy these limits no longer use (created with other
        // limits, then a crash) is removed if empty, refused if busy, like the others.
        let wanted: Vec<PathBuf> = targets.iter().map(|t| t.mount.join(PARENT).join(name)).collect();
        let stale = Cgroups::open_in(hierarchies, name)?;
        let stale =
            Cgroups { name: name.to_string(), dirs: stale.dirs.into_iter().filter(|d| !wanted.contains(d)).collect() };
        let busy = stale.pids();
        if !busy.is_empty() {
            return Err(CgroupError::InUse { path: stale.dirs.first().cloned().unwrap_or_default(), pids: busy });
        }
        stale.remove()?;
        let mut made = Cgroups { name: name.to_string(), dirs: Vec::new() };
        let result = (|| {
            let mut v2_dir = None;
            for t in &targets {
                let (dir, controllers) = made.create_one(t, limits, &mut warnings)?;
                write_limits(&dir, t.version, &controllers, limits)?;
                if controllers.contains(&"devices") {
                    write_devices(&dir, &rules)?;
                }
                if t.version == Version::V2 {
                    v2_dir = Some(dir);
                }
            }
            // Without the v1 controller, the cgroup2 way: a BPF device filter.
            if !targets.iter().any(|t| t.controllers.contains(&"devices")) {
                match v2_dir {
                    Some(dir) => match bpf::attach(&dir, &rules) {
                        Ok(()) => {}
                        Err(e) if e.source.raw_os_error() == Some(libc::ENOSYS) => {
                            warnings.push(format!("device allow-list not applied: no bpf(2) on this kernel ({e})"))
                        }
                        Err(e) => return Err(CgroupError::Device { path: dir, why: e.to_string() }),
                    },
                    None => warnings.push(
                        "device allow-list not applied: no `devices` cgroup controller and no cgroup2 on this host"
                            .to_string(),
                    ),
                }
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok((made, warnings)),
            Err(e) => {
                // Nothing was started in them yet: removing is just rmdir; keep the first error.
                let _ = made.remove();
                Err(e)
            }
        }
    }

    /// Make `<mount>/container/<name>` for one target; on cgroup2 enable its
    /// controllers on the way down. Returns it and the controllers usable there.
    fn create_one(
        &mut self,
        t: &CgroupTarget,
        limits: &LimitsRes,
        warnings: &mut Vec<String>,
    ) -> Result<(PathBuf, Vec<&'static str>), CgroupError> {
        let parent = t.mount.join(PARENT);
        mkdir(&parent)?;
        let cpuset = t.controllers.contains(&"cpuset");
        if cpuset {
            fill_cpuset(&parent, &t.mount)?;
        }
        let mut usable = Vec::new();
        for &c in &t.controllers {
            if t.version == Version::V1 {
                usable.push(c);
                continue;
            }
            // On cgroup2 a controller is usable in container/<name> only if it is
            // enabled in the subtree_control of every ancestor below the mount.
            match enable(&t.mount, c).and_then(|()| enable(&parent, c)) {
                Ok(()) => usable.push(c),
                // Not allowed to write at all: a real error, not a missing controller.
                Err(e) if is_permission(&e) => return Err(e),
                // EBUSY (the mount's cgroup has processes, e.g. inside a cgroup
                // namespace), EINVAL, ENOENT…: the controller is just not usable here.
                Err(e) => {
                    if let Some((_, limit)) = requested(limits).into_iter().find(|(rc, _)| *rc == c) {
                        warnings.push(missing(c, &limit, &e.to_string()));
                    }
                }
            }
        }
        let dir = parent.join(&self.name);
        let existed = dir.is_dir();
        mkdir(&dir)?;
        self.dirs.push(dir.clone());
        if cpuset {
            fill_cpuset(&dir, &parent)?;
        }
        if existed {
            let pids = procs_recursive(&dir);
            if !pids.is_empty() {
                // Not ours to reuse: forget it so that cleanup does not kill it.
                self.dirs.pop();
                return Err(CgroupError::InUse { path: dir, pids });
            }
            // Cgroups a previous run made below it (empty, as checked) would keep
            // their own limits and device lists, and `devices.deny a` refuses a
            // cgroup with children (until the kernel has taken a removed one
            // offline, some time after rmdir): start over with a fresh cgroup.
            let subtree = subdirs_deepest_first(&dir);
            if subtree.len() > 1 {
                let deadline = Instant::now() + REMOVE_TIMEOUT;
                for sub in &subtree {
                    rmdir_retry(sub, &mut Backoff::new(deadline))?;
                }
                mkdir(&dir)?;
            }
        }
        Ok((dir, usable))
    }

    /// The existing cgroups of a container (for stop, destroy, exec). Hierarchies
    /// where it has none are skipped, so this works after a partial create or remove.
    pub fn open(name: &str) -> Result<Cgroups, CgroupError> {
        Self::open_in(&discover()?, name)
    }

    /// [`Cgroups::open`] on the given hierarchies.
    pub fn open_in(hierarchies: &[Hierarchy], name: &str) -> Result<Cgroups, CgroupError> {
        check_name(name)?;
        // Every hierarchy that can hold one (with every limit set): which ones got a
        // cgroup depends on the limits it was created with.
        let all = LimitsRes { memory: Some(1), pids: Some(1), cpu_weight: Some(100) };
        let (targets, _) = layout(hierarchies, &all);
        let dirs = targets.iter().map(|t| t.mount.join(PARENT).join(name)).filter(|d| d.is_dir()).collect();
        Ok(Cgroups { name: name.to_string(), dirs })
    }

    /// The container's cgroup directories, one per hierarchy.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The cgroup2 cgroup of the container (a pure v2 host, or the `unified`
    /// hierarchy of a hybrid one), if there is one.
    pub fn v2_dir(&self) -> Option<&Path> {
        const CGROUP2_SUPER_MAGIC: libc::__fsword_t = 0x6367_7270;
        self.dirs
            .iter()
            .map(PathBuf::as_path)
            .find(|d| nix::sys::statfs::statfs(*d).is_ok_and(|st| st.filesystem_type().0 == CGROUP2_SUPER_MAGIC))
    }

    /// Delegates the cgroup2 cgroup to the container's root `owner` (host uid and
    /// gid; `None`: host root already owns it), as systemd's `Delegate=yes` does:
    /// the folder (so that PID 1 can make a child per service) and its `cgroup.procs`
    /// (so that it can move its children into them: moving needs the common
    /// ancestor's). Nothing above it, and none of its limit files or its
    /// `cgroup.subtree_control`: the container can split its cgroup, never change
    /// its limits or reach out of it. Returns a directory fd of it (close-on-exec)
    /// for PID 1, or `None` without cgroup2.
    pub fn delegate(&self, owner: Option<(u32, u32)>) -> Result<Option<std::os::fd::OwnedFd>, CgroupError> {
        let Some(dir) = self.v2_dir() else { return Ok(None) };
        if let Some((uid, gid)) = owner {
            for p in [dir.to_path_buf(), dir.join("cgroup.procs")] {
                std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).map_err(|e| CgroupError::Write {
                    path: p.clone(),
                    value: format!("owner {uid}:{gid}"),
                    source: e,
                })?;
            }
        }
        let f = fs::File::open(dir).map_err(|e| CgroupError::Read { path: dir.to_path_buf(), source: e })?;
        Ok(Some(f.into()))
    }

    /// `cgroup.procs` of each cgroup: write a pid (or `0` for oneself) to join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Move process `pid` (all its threads) into every cgroup of the container.
    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        // 0 would move the caller and a negative pid is never a process.
        if pid <= 0 {
            return Err(CgroupError::Pid(pid));
        }
        for path in self.procs_files() {
            write_file(&path, &pid.to_string())?;
        }
        Ok(())
    }

    /// Processes inside the container's cgroups (and cgroups below them), sorted.
    pub fn pids(&self) -> Vec<i32> {
        let mut all: BTreeSet<i32> = BTreeSet::new();
        for d in &self.dirs {
            all.extend(procs_recursive(d));
        }
        all.into_iter().collect()
    }

    /// Memory in use (v2 `memory.current`, v1 `memory.usage_in_bytes`), if a memory
    /// controller is used for this container.
    pub fn memory_current(&self) -> Option<u64> {
        self.dirs.iter().find_map(|d| {
            ["memory.current", "memory.usage_in_bytes"]
                .iter()
                .find_map(|f| fs::read_to_string(d.join(f)).ok())
                .and_then(|s| s.trim().parse().ok())
        })
    }

    /// SIGKILL every process inside, wait (bounded) until all cgroups are empty, and
    /// remove every directory, deepest first. Missing directories are fine, so this
    /// is idempotent and also cleans up after a partial create.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + REMOVE_TIMEOUT;
        let me = std::process::id() as i32;
        if self.pids().contains(&me) {
            return Err(CgroupError::SelfInside(self.name.clone()));
        }
        // cgroup2's cgroup.kill kills the whole subtree atomically, racing forks
        // included; without it (v1 only, or kernel < 5.14) we kill pid by pid below.
        for d in &self.dirs {
            let kill_file = d.join("cgroup.kill");
            if kill_file.exists() {
                match write_file(&kill_file, "1") {
                    Ok(()) => {}
                    Err(CgroupError::Write { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let mut backoff = Backoff::new(deadline);
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for &p in &pids {
                // A pid read from cgroup.procs may exit (and in theory be reused)
                // before we signal it; cgroup.kill above avoids that where it exists.
                match kill(Pid::from_raw(p), Signal::SIGKILL) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(source) => return Err(CgroupError::Kill { pid: p, source }),
                }
            }
            if !backoff.wait() {
                return Err(CgroupError::Stuck { name: self.name.clone(), pids, secs: REMOVE_TIMEOUT.as_secs() });
            }
        }
        for d in &self.dirs {
            for sub in subdirs_deepest_first(d) {
                rmdir_retry(&sub, &mut Backoff::new(deadline))?;
            }
        }
        Ok(())
    }
}

/// Enable controller `c` for the children of cgroup2 directory `dir` (if not yet).
fn enable(dir: &Path, c: &str) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.subtree_control");
    let current = fs::read_to_string(&path).map_err(|source| CgroupError::Read { path: path.clone(), source })?;
    if current.split_whitespace().any(|x| x == c) {
        return Ok(());
    }
    write_file(&path, &format!("+{c}"))
}

/// A v1 cpuset cgroup starts with no CPUs and no memory nodes, and refuses processes
/// until it has both: give `dir` those of `from` (its parent) where it has none.
fn fill_cpuset(dir: &Path, from: &Path) -> Result<(), CgroupError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let read = |d: &Path| {
            let path = d.join(file);
            fs::read_to_string(&path).map(|s| s.trim().to_string()).map_err(|source| CgroupError::Read { path, source })
        };
        if read(dir)?.is_empty() {
            write_file(&dir.join(file), &read(from)?)?;
        }
    }
    Ok(())
}

/// The v1 device allow-list: deny everything, then allow each rule. `devices.deny a`
/// also drops every exception a reused cgroup had (it has no children: a container's
/// cgroupfs is read-only).
fn write_devices(dir: &Path, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    write_file(&dir.join("devices.deny"), "a")?;
    for r in rules {
        write_file(&dir.join("devices.allow"), &r.v1_line())?;
    }
    Ok(())
}

fn is_permission(e: &CgroupError) -> bool {
    let source = match e {
        CgroupError::Read { source, .. } | CgroupError::Write { source, .. } => source,
        _ => return false,
    };
    matches!(source.raw_os_error(), Some(libc::EACCES | libc::EPERM | libc::EROFS))
}

/// Write every managed controller's value: the limit, or the kernel default when
/// the limit is unset, so that a reused cgroup never keeps a stale limit.
fn write_limits(dir: &Path, v: Version, controllers: &[&str], limits: &LimitsRes) -> Result<(), CgroupError> {
    let or = |limit: Option<String>, default: &str| limit.unwrap_or_else(|| default.to_string());
    for c in controllers {
        let (file, value) = match (*c, v) {
            // -1: unlimited (v1 rounds it to its page-aligned maximum).
            ("memory", Version::V1) => ("memory.limit_in_bytes", or(limits.memory.map(|m| m.to_string()), "-1")),
            ("memory", Version::V2) => ("memory.max", or(limits.memory.map(|m| m.to_string()), "max")),
            ("pids", _) => ("pids.max", or(limits.pids.map(|p| p.to_string()), "max")),
            ("cpu", Version::V1) => {
                ("cpu.shares", or(limits.cpu_weight.map(|w| weight_to_shares(w).to_string()), "1024"))
            }
            ("cpu", Version::V2) => ("cpu.weight", or(limits.cpu_weight.map(|w| w.to_string()), "100")),
            _ => continue,
        };
        write_file(&dir.join(file), &value)?;
    }
    Ok(())
}

fn mkdir(path: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(source) => Err(CgroupError::Create { path: path.into(), source }),
    }
}

/// One write() of the whole value: cgroup files take a value per write call. No
/// O_CREAT: a missing interface file must fail as missing, not as "cannot create".
fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| CgroupError::Write { path: path.into(), value: value.into(), source })
}

fn read_procs(dir: &Path) -> Vec<i32> {
    // Missing or vanishing files read as empty: the cgroup may be removed meanwhile.
    // 0 is a process outside our pid namespace, which we could not signal anyway.
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.split_whitespace().filter_map(|p| p.parse().ok()).filter(|p| *p > 0).collect())
        .unwrap_or_default()
}

fn procs_recursive(dir: &Path) -> Vec<i32> {
    subdirs_deepest_first(dir).iter().flat_map(|d| read_procs(d)).collect()
}

/// `dir` and every cgroup below it, children before parents (the order rmdir needs).
fn subdirs_deepest_first(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(subdirs_deepest_first(&e.path()));
            }
        }
    }
    if dir.is_dir() {
        out.push(dir.to_path_buf());
    }
    out
}

fn rmdir_retry(path: &Path, backoff: &mut Backoff) -> Result<(), CgroupError> {
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            // EBUSY: a killed process may still be on its way out of the cgroup.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && backoff.wait() => {}
            Err(source) => return Err(CgroupError::Remove { path: path.into(), source }),
        }
    }
}

/// Bounded polling: 1 ms doubling up to 50 ms, until a deadline.
struct Backoff {
    deadline: Instant,
    step: Duration,
}

impl Backoff {
    fn new(deadline: Instant) -> Self {
        Backoff { deadline, step: Duration::from_millis(1) }
    }

    /// Sleep one step; false once the deadline has passed.
    fn wait(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        std::thread::sleep(self.step.min(self.deadline - now));
        self.step = (self.step * 2).min(Duration::from_millis(50));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
24 31 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
33 31 0:30 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
34 31 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,pids
37 31 0:34 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpuset
38 31 0:35 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,devices";

    const PURE_V2: &str = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
28 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
90 60 0:26 / /var/lib/x/cg rw,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate";

    const V1_ONLY: &str = "\
25 20 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
27 25 0:25 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,memory
28 25 0:26 / /sys/fs/cgroup/cpu rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpu
29 25 0:27 / /sys/fs/cgroup/my\\040pids rw,relatime - cgroup cgroup rw,noprefix,pids";

    fn h(mount: &str, version: Version, controllers: &[&str], name: Option<&str>) -> Hierarchy {
        Hierarchy {
            mount: mount.into(),
            version,
            controllers: controllers.iter().map(|c| c.to_string()).collect(),
            name: name.map(String::from),
        }
    }

    fn t(mount: &str, version: Version, controllers: &[&'static str]) -> CgroupTarget {
        CgroupTarget { mount: mount.into(), version, controllers: controllers.to_vec() }
    }

    fn all_limits() -> LimitsRes {
        LimitsRes { memory: Some(64 << 20), pids: Some(32), cpu_weight: Some(200) }
    }

    #[test]
    fn parses_hybrid_layout() {
        use Version::*;
        assert_eq!(
            parse_mountinfo(HYBRID),
            [
                h("/sys/fs/cgroup/unified", V2, &[], None),
                h("/sys/fs/cgroup/systemd", V1, &[], Some("systemd")),
                h("/sys/fs/cgroup/cpu,cpuacct", V1, &["cpu", "cpuacct"], None),
                h("/sys/fs/cgroup/memory", V1, &["memory"], None),
                h("/sys/fs/cgroup/pids", V1, &["pids"], None),
                h("/sys/fs/cgroup/cpuset", V1, &["cpuset"], None),
                h("/sys/fs/cgroup/devices", V1, &["devices"], None),
            ]
        );
    }

    #[test]
    fn parses_pure_v2_once_despite_a_second_mount() {
        assert_eq!(parse_mountinfo(PURE_V2), [h("/sys/fs/cgroup", Version::V2, &[], None)]);
    }

    #[test]
    fn parses_v1_only_with_flags_and_escapes() {
        use Version::*;
        assert_eq!(
            parse_mountinfo(V1_ONLY),
            [
                h("/sys/fs/cgroup/systemd", V1, &[], Some("systemd")),
                h("/sys/fs/cgroup/memory", V1, &["memory"], None),
                h("/sys/fs/cgroup/cpu", V1, &["cpu"], None),
                h("/sys/fs/cgroup/my pids", V1, &["pids"], None),
            ]
        );
    }

    #[test]
    fn ignores_garbage_lines() {
        assert_eq!(parse_mountinfo("\n-\n1 2 3\n1 2 0:1 / /x rw - cgroup2\n"), []);
    }

    #[test]
    fn hybrid_uses_v1_controllers_and_the_unified_hierarchy() {
        use Version::*;
        let mut hs = parse_mountinfo(HYBRID);
        hs[0].controllers = vec!["hugetlb".into()];
        let every_v1 = [
            t("/sys/fs/cgroup/systemd", V1, &[]),
            t("/sys/fs/cgroup/cpu,cpuacct", V1, &["cpu"]),
            t("/sys/fs/cgroup/memory", V1, &["memory"]),
            t("/sys/fs/cgroup/pids", V1, &["pids"]),
            t("/sys/fs/cgroup/cpuset", V1, &["cpuset"]),
            t("/sys/fs/cgroup/devices", V1, &["devices"]),
        ];
        let (targets, warnings) = layout(&hs, &all_limits());
        assert_eq!(targets[0], t("/sys/fs/cgroup/unified", V2, &[]));
        assert_eq!(targets[1..], every_v1);
        assert_eq!(warnings, Vec::<String>::new());
        // Without limits too, every v1 hierarchy holds the container (its cgroup
        // namespace is rooted at its own cgroup in each, and the device list applies).
        let (targets, warnings) = layout(&hs, &LimitsRes::default());
        assert_eq!(targets[1..], every_v1);
        assert!(warnings.is_empty());
    }

    #[test]
    fn pure_v2_uses_available_controllers_and_cpu_only_for_a_weight() {
        let mut hs = parse_mountinfo(PURE_V2);
        hs[0].controllers = ["cpuset", "cpu", "io", "memory", "pids"].map(String::from).to_vec();
        let (targets, warnings) = layout(&hs, &all_limits());
        assert_eq!(targets, [t("/sys/fs/cgroup", Version::V2, &["memory", "pids", "cpu"])]);
        assert!(warnings.is_empty());
        let (targets, _) = layout(&hs, &LimitsRes::default());
        assert_eq!(targets, [t("/sys/fs/cgroup", Version::V2, &["memory", "pids"])]);
    }

    #[test]
    fn missing_controllers_are_warnings() {
        // v2 without delegated controllers (hybrid `unified`, or a bare container host).
        let hs = parse_mountinfo(PURE_V2);
        let (targets, warnings) = layout(&hs, &all_limits());
        assert_eq!(targets, [t("/sys/fs/cgroup", Version::V2, &[])]);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].starts_with("memory limit of 67108864 bytes not applied: no usable `memory`"));
        assert!(warnings[1].starts_with("pids limit of 32 not applied"));
        assert!(warnings[2].starts_with("cpu weight 200 not applied"));
        // v1 without pids; no limits set means no warnings.
        let hs: Vec<_> = parse_mountinfo(V1_ONLY).into_iter().filter(|h| h.controllers != ["pids"]).collect();
        let (targets, warnings) = layout(&hs, &all_limits());
        assert_eq!(targets.len(), 3, "systemd, memory and cpu: {targets:?}");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("`pids`"));
        assert!(layout(&hs, &LimitsRes::default()).1.is_empty());
        // No cgroups at all.
        let (targets, warnings) = layout(&[], &all_limits());
        assert!(targets.is_empty());
        assert_eq!(warnings.len(), 3);
    }

    #[test]
    fn create_with_no_hierarchies_only_warns() {
        let (cg, warnings) = Cgroups::create_in(&[], "x", &all_limits()).expect("no error");
        assert!(cg.dirs().is_empty());
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert!(warnings[3].starts_with("device allow-list not applied"), "{warnings:?}");
        assert!(cg.pids().is_empty());
        assert_eq!(cg.memory_current(), None);
        cg.remove().expect("nothing to remove");
    }

    #[test]
    fn device_rules_are_runc_style_lines() {
        let lines: Vec<String> = DEFAULT_DEVICES.iter().map(DeviceRule::v1_line).collect();
        assert_eq!(
            lines,
            ["c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:2 rwm", "c 136:* rwm"]
        );
        let any_block = DeviceRule { block: true, major: None, minor: None };
        assert_eq!(any_block.v1_line(), "b *:* rwm");
        // A node on the host: its real numbers; anything else is an error.
        assert_eq!(DeviceRule::of_node(Path::new("/dev/null")).expect("/dev/null"), DeviceRule::char(1, 3));
        for bad in ["/dev", "/nonexistent-device"] {
            assert!(matches!(DeviceRule::of_node(Path::new(bad)), Err(CgroupError::Device { .. })), "{bad}");
        }
    }

    #[test]
    fn shares_from_weight() {
        assert_eq!(weight_to_shares(100), 1024);
        assert_eq!(weight_to_shares(1), 10);
        assert_eq!(weight_to_shares(200), 2048);
        assert_eq!(weight_to_shares(10_000), 102_400);
        assert_eq!(weight_to_shares(0), 2);
        assert_eq!(weight_to_shares(u32::MAX), 262_144);
    }

    #[test]
    fn names_are_one_plain_component() {
        for ok in ["web", "t-cg-1-2", "a_b", "X9"] {
            check_name(ok).expect(ok);
        }
        for bad in ["", ".", "..", "a/b", "../x", "a..b", "memory.max", "a b", "a\0b", &"x".repeat(201)] {
            assert!(matches!(check_name(bad), Err(CgroupError::Name(_))), "{bad:?}");
        }
        assert!(matches!(Cgroups::create_in(&[], "../etc", &LimitsRes::default()), Err(CgroupError::Name(_))));
        assert!(matches!(Cgroups::open_in(&[], "a/b"), Err(CgroupError::Name(_))));
    }

    #[test]
    fn bad_limits_are_errors() {
        for l in [
            LimitsRes { memory: Some(0), ..Default::default() },
            LimitsRes { pids: Some(0), ..Default::default() },
            LimitsRes { cpu_weight: Some(0), ..Default::default() },
            LimitsRes { cpu_weight: Some(10_001), ..Default::default() },
        ] {
            assert!(matches!(Cgroups::create_in(&[], "x", &l), Err(CgroupError::Limit(_))), "{l:?}");
        }
    }

    #[test]
    fn add_refuses_non_processes() {
        let cg = Cgroups { name: "x".into(), dirs: vec![] };
        assert!(matches!(cg.add(0), Err(CgroupError::Pid(0))));
        assert!(matches!(cg.add(-1), Err(CgroupError::Pid(-1))));
    }
}
