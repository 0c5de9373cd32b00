//! Where everything lives under the state root, and who may change it.
//!
//! Invariant: every path under the state root comes from [`StateRoot`] (root-wide
//! files) or [`Dirs`] (one container's folder), and nothing else joins names onto the
//! root, and only a container name (`vocab::values::Name`, the spec's rule) is ever
//! joined as `containers/<name>`; the cache tree is `layers::Cache`'s. `state.json` is written by
//! [`record_applied`] only and `pending.json` by [`write_pending`] only. Every command
//! that changes a container holds its [`Lock`]; `run.json` names the running PID 1 by
//! pid, start time *and* boot id, so a recycled pid (also after a reboot) is never
//! mistaken for the container.
//!
//! Layout of the state root (default `/var/lib/container`):
//! - `pool.json`    addresses in use, by container name ([`AddressPool`])
//! - `.pool.lock`, `.nft.lock`   flock(2) targets for the pool and the nftables table
//! - `.nft.json`    the last batch given to `nft` (skips an identical rebuild)
//! - `containers/<name>/`  one container (below)
//!
//! Layout of `containers/<name>/`:
//! - `state.json`   the last applied plan (written last, atomically)
//! - `pending.json` the plan an apply is carrying out; present only while it runs or
//!   after it was interrupted, so the next command knows to recreate and clean up
//! - `run.json`     pid, start time and boot id of the running PID 1
//! - `desired.json` what the container should be: `running` (set by `apply` and
//!   `start`) or `stopped` (set by `stop`); `start --all` brings it back to that
//! - `exit.json`    how the last PID 1 ended, written by its keeper
//!   (`exec::keeper::ExitRecord`); removed when a new one starts
//! - `stop.json`    a user's `stop` ended the last run (written before PID 1 is
//!   asked to stop); without it a PID 1 that ended is a crash. Removed at start
//! - `rootfs.json`  which cached layers the root is made of (`layers::RootfsRecord`)
//! - `supervisor.json`  the supervisor's configuration PID 1 was last given (0600,
//!   host-private: PID 1 gets it as a sealed memfd at fd 3, and each `reconfigure`
//!   brings a new one; this copy is only for the admin to read)
//! - `supervisor.log`   PID 1's own stdout and stderr (0600, host-private, opened
//!   `O_APPEND | O_NOFOLLOW` and passed to PID 1 as fds 1 and 2)
//! - `run/`         bound at `/run/container` inside: status.json, control.sock,
//!   logs/ (the supervisor names what is inside). The one folder (with `volumes/`)
//!   the container can write, as its root owns it: anything below may be a symlink,
//!   FIFO or socket it planted, so the host opens what is there only through
//!   `exec::beneath` anchored at `run/` (`supervisor::read_status`,
//!   `supervisor::control`, `container logs`) and trusts nothing it reads there.
//!   `run/supervisor.json` and `run/supervisor.log` are what an older version kept
//!   there: removed at start, never read
//! - `secrets/`     one 0600 file per generated secret (bound read-only inside);
//!   a missing, empty or irregular one of a secret the applied plan uses is an
//!   error (`prepare::check_secrets`), never regenerated unasked
//! - `regenerate.json`  secrets `container secret regenerate` asked a new value for:
//!   `plan` shows them, `apply` makes them and removes the file ([`read_regenerate`])
//! - `files/`       rendered files, each bound onto its container path
//! - `net/`         generated /etc/hosts and /etc/resolv.conf, bound like files
//! - `volumes/`     volumes: kept by `destroy` unless `--volumes`
//! - `.lock`        flock(2) target

pub use crate::exec::lock::Lock;
use crate::exec::process::proc_stat;
use crate::plan::pool::AddressPool;
use crate::plan::Plan;
use crate::state::{read_json, write_private, StateError};
use crate::vocab::values::Name;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The state root when neither `--root` nor `CONTAINER_ROOT` says otherwise.
pub const DEFAULT_ROOT: &str = "/var/lib/container";

/// The state root: its root-wide files and the folder of each container.
#[derive(Debug, Clone)]
pub struct StateRoot {
    pub root: PathBuf,
}

impl StateRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateRoot { root: root.into() }
    }
    /// The folder holding one folder per container.
    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }
    /// The paths of container `name` (a container name: see [`Dirs::new`]).
    pub fn container(&self, name: &str) -> Dirs {
        Dirs::new(&self.root, name)
    }
    pub fn pool_file(&self) -> PathBuf {
        self.root.join("pool.json")
    }
    /// The lock on something all containers under the root share (`pool`, `nft`).
    pub fn shared_lock(&self, what: &str) -> PathBuf {
        self.root.join(format!(".{what}.lock"))
    }
    /// The last batch given to `nft` for this root.
    pub fn nft_cache(&self) -> PathBuf {
        self.root.join(".nft.json")
    }
    /// The nftables table of this root: `container` for the default root,
    /// `container_<hash>` for any other, so containers under two roots (a test's temp
    /// root and the real one) never rebuild each other's rules away.
    pub fn nft_table(&self) -> String {
        let table = crate::exec::nft::TABLE;
        match self.tag() {
            None => table.to_string(),
            Some(tag) => format!("{table}_{tag}"),
        }
    }
    /// What tells this root's host objects from another's: `None` for the default
    /// root (today's names), else 8 hex digits of a hash of its canonical path (so
    /// `--root r`, `--root ./r/` and `--root /abs/r` are one root).
    fn tag(&self) -> Option<String> {
        let canonical =
            |p: &Path| std::fs::canonicalize(p).or_else(|_| std::path::absolute(p)).unwrap_or_else(|_| p.to_path_buf());
        let root = canonical(&self.root);
        if self.root == Path::new(DEFAULT_ROOT) || root == canonical(Path::new(DEFAULT_ROOT)) {
            return None;
        }
        use sha2::Digest;
        let h = sha2::Sha256::digest(root.as_os_str().as_encoded_bytes());
        Some(format!("{:02x}{:02x}{:02x}{:02x}", h[0], h[1], h[2], h[3]))
    }
    /// The name container `name`'s host objects are derived from (its cgroups
    /// `<hierarchy>/container/<key>`, its veth `exec::net::host_ifname(key)`): `name`
    /// under the default root, `<name>_<tag>` under any other, so two roots' containers
    /// of one name never share (and never stop or take over) each other's. A `_` is in
    /// no container name, so a key never equals another root's.
    pub fn host_key(&self, name: &str) -> String {
        match self.tag() {
            None => name.to_string(),
            Some(tag) => format!("{name}_{tag}"),
        }
    }

    /// The plan last applied to `name`; `None` when it was never applied.
    pub fn applied(&self, name: &str) -> Result<Option<Plan>, StateError> {
        read_json(&self.container(name).state())
    }

    /// The root's address pool; a damaged `pool.json` is rebuilt (in memory, with a
    /// warning on stderr) from the addresses the containers' plans record, so every
    /// command still works and the next one that records addresses writes it anew.
    pub fn pool(&self) -> Result<AddressPool, StateError> {
        Ok(self.pool_or_rebuilt()?.0)
    }

    /// [`StateRoot::pool`], and whether it was rebuilt (so the caller saves it).
    pub fn pool_or_rebuilt(&self) -> Result<(AddressPool, bool), StateError> {
        match read_json(&self.pool_file()) {
            Ok(p) => Ok((p.unwrap_or_default(), false)),
            Err(e @ StateError::Parse { .. }) => {
                use std::io::Write;
                let pool = self.rebuilt_pool();
                // Never a panic on a closed stderr: the command goes on.
                let _ = writeln!(
                    std::io::stderr(),
                    "warning: {e}; rebuilt it from the containers' states ({} addresses); it is written anew by the next apply or destroy",
                    pool.ipv4.len() + pool.ipv6.len()
                );
                Ok((pool, true))
            }
            Err(e) => Err(e),
        }
    }

    /// The pool as the containers' plans record it: each container's pending plan
    /// (the newest an apply recorded) or else its applied one; a container whose
    /// plans are both unreadable holds nothing.
    pub fn rebuilt_pool(&self) -> AddressPool {
        let mut pool = AddressPool::default();
        let entries = std::fs::read_dir(self.containers()).into_iter().flatten().flatten();
        for name in entries.filter_map(|e| e.file_name().to_str().map(str::to_string)).filter(|n| is_name(n)) {
            let dirs = self.container(&name);
            let plan = [dirs.pending(), dirs.state()].iter().find_map(|p| read_json::<Plan>(p).ok().flatten());
            if let Some(plan) = plan {
                if let Some(a) = plan.network.ipv4_addr() {
                    pool.ipv4.insert(name.clone(), a);
                }
                if let Some(a) = plan.network.ipv6_addr() {
                    pool.ipv6.insert(name, a);
                }
            }
        }
        pool
    }

    pub fn save_pool(&self, pool: &AddressPool) -> Result<(), StateError> {
        let json = serde_json::to_vec_pretty(pool).expect("pools always serialize");
        write_private(&self.pool_file(), &json)
    }

    /// Create the root and `containers/` as host root's alone (see [`private_dir`]);
    /// a root the tool made before (it has `containers/`) is tightened too.
    pub fn create(&self) -> std::io::Result<()> {
        private_dir(&self.root, self.containers().is_dir())?;
        private_dir(&self.containers(), true)
    }
}

/// The container's run folder as seen from inside.
pub const RUN_IN: &str = "/run/container";

/// PID 1's own log, in the container's (host-private) folder.
pub const SUPERVISOR_LOG: &str = "supervisor.log";

/// The supervisor's configuration, in the container's (host-private) folder.
pub const SUPERVISOR_CONFIG: &str = "supervisor.json";

/// What an older version kept in the run folder, which the container can write:
/// removed at start and never read.
pub const LEGACY_RUN_FILES: [&str; 2] = [SUPERVISOR_CONFIG, SUPERVISOR_LOG];

#[derive(Debug, Clone)]
pub struct Dirs {
    pub root: PathBuf,
    pub name: String,
}

impl Dirs {
    /// The folder of container `name` under `state_root`.
    ///
    /// # Panics
    ///
    /// When `name` is not a container name ([`Name::parse`]): a path, `..`, `.` or an
    /// empty name would make every path below reach outside `containers/<name>`, and
    /// `destroy --volumes` delete it. Every name comes checked: the CLI parses its
    /// NAME arguments as [`Name`], a plan's name is the spec's [`Name`], and listings
    /// of the state root skip entries that are not names ([`is_name`]).
    pub fn new(state_root: &Path, name: &str) -> Self {
        assert!(is_name(name), "refusing container name {name:?}: {}", Name::parse(name).unwrap_err());
        Dirs { root: state_root.join("containers").join(name), name: name.to_string() }
    }
    /// Create the state root, `containers/` and this container's folder, each 0700
    /// (see [`private_dir`]).
    pub fn create(&self, state_root: &Path) -> std::io::Result<()> {
        StateRoot::new(state_root).create()?;
        private_dir(&self.root, true)
    }
    pub fn state(&self) -> PathBuf {
        self.root.join("state.json")
    }
    pub fn pending(&self) -> PathBuf {
        self.root.join("pending.json")
    }
    pub fn run_info(&self) -> PathBuf {
        self.root.join("run.json")
    }
    /// What the container should be at boot ([`Desired`]).
    pub fn desired(&self) -> PathBuf {
        self.root.join("desired.json")
    }
    /// How the last PID 1 ended (its keeper writes it; see `exec::keeper`).
    pub fn exit_file(&self) -> PathBuf {
        self.root.join("exit.json")
    }
    /// Present when `stop` ended the last run (so its end is no crash).
    pub fn stop_file(&self) -> PathBuf {
        self.root.join("stop.json")
    }
    pub fn rootfs_record(&self) -> PathBuf {
        self.root.join("rootfs.json")
    }
    /// The container's lock (see `lifecycle::lock`).
    pub fn lock_file(&self) -> PathBuf {
        self.root.join(".lock")
    }
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn logs(&self) -> PathBuf {
        self.run().join("logs")
    }
    /// The log the supervisor keeps of service `name` (see `exec::supervisor`).
    pub fn service_log(&self, name: &str) -> PathBuf {
        self.run().join(Self::service_log_in_run(name))
    }
    /// [`Dirs::service_log`] relative to [`Dirs::run`]: the run folder is the
    /// container's, so the host opens what is below it only through
    /// `exec::beneath::Beneath` anchored there (no symlink followed).
    pub fn service_log_in_run(name: &str) -> PathBuf {
        Path::new("logs").join(format!("{name}.log"))
    }
    /// stdout and stderr of PID 1 itself: host-private, never in the run folder.
    pub fn supervisor_log(&self) -> PathBuf {
        self.root.join(SUPERVISOR_LOG)
    }
    /// The supervisor's configuration as last given to PID 1: host-private, never in
    /// the run folder.
    pub fn supervisor_config(&self) -> PathBuf {
        self.root.join(SUPERVISOR_CONFIG)
    }
    pub fn secrets(&self) -> PathBuf {
        self.root.join("secrets")
    }
    /// Secrets asked to be regenerated by the next apply ([`read_regenerate`]).
    pub fn regenerate(&self) -> PathBuf {
        self.root.join("regenerate.json")
    }
    pub fn files(&self) -> PathBuf {
        self.root.join("files")
    }
    /// Host path of a rendered file (`path` is an absolute container path).
    pub fn file(&self, path: &str) -> PathBuf {
        self.files().join(path.trim_start_matches('/'))
    }
    /// Host path of a generated name resolution file (`/etc/hosts`, `/etc/resolv.conf`).
    pub fn net_file(&self, path: &str) -> PathBuf {
        self.root.join("net").join(path.rsplit('/').next().unwrap_or(path))
    }
    pub fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }
    pub fn volume(&self, source: &str) -> PathBuf {
        self.volumes().join(source)
    }
}

/// Make `dir` a folder only its owner, host root, may enter (0700): created so if
/// missing (missing parents get the usual mode), else tightened to 0700 when `ours`
/// (the tool made it: a state root or cache of an earlier version was 0755). A
/// folder the user named that holds nothing of ours (`--root /srv`) keeps its mode.
/// Nothing a container or a service may need goes through these folders: its root,
/// volumes, files and run folder are mounted by host root, whose mounts need no
/// search permission on the way there.
pub fn private_dir(dir: &Path, ours: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    // The umask can only take bits away from 0700.
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && ours => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The secrets `container secret regenerate` asked a new value for, which the next
/// `apply` makes (empty when none).
pub fn read_regenerate(dirs: &Dirs) -> Result<std::collections::BTreeSet<String>, StateError> {
    Ok(read_json(&dirs.regenerate())?.unwrap_or_default())
}

/// Record the secrets to regenerate (host-private; the caller holds the lock).
pub fn write_regenerate(dirs: &Dirs, keys: &std::collections::BTreeSet<String>) -> Result<(), StateError> {
    if keys.is_empty() {
        return clear_regenerate(dirs);
    }
    let json = serde_json::to_vec_pretty(keys).expect("names serialize");
    write_private(&dirs.regenerate(), &json)
}

/// Forget the secrets to regenerate: `apply` made them (after `state.json`).
pub fn clear_regenerate(dirs: &Dirs) -> Result<(), StateError> {
    match std::fs::remove_file(dirs.regenerate()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StateError::Write { path: dirs.regenerate(), source }),
    }
}

/// Whether `name` is a container name (the spec's rule, [`Name::parse`]): only such a
/// name is ever joined onto the state root.
pub fn is_name(name: &str) -> bool {
    Name::parse(name).is_ok()
}

/// The running PID 1 of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    pub pid: i32,
    /// Field 22 of /proc/<pid>/stat (clock ticks since boot): with the pid and the
    /// boot id it names one process for good.
    pub start_time: u64,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// PID 1 got its configuration as a sealed memfd and takes `reconfigure` only
    /// from the host (this version). False for a container an older version started,
    /// whose PID 1 reads `run/supervisor.json`, which the container can write: `apply`
    /// recreates such a container instead of reconfiguring it.
    #[serde(default)]
    pub config_fd: bool,
    /// The boot PID 1 was started in (`/proc/sys/kernel/random/boot_id`): after a
    /// reboot the same pid and start tick may name another process. `None` in a
    /// record of an older version (its pid and start tick alone count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<BootId>,
}

impl RunInfo {
    /// The process `pid` as this version starts PID 1 (`config_fd`), in this boot.
    pub fn of(pid: i32) -> Option<RunInfo> {
        let (start_time, _) = proc_stat(pid)?;
        Some(RunInfo { pid, start_time, started_ms: now_ms(), config_fd: true, boot_id: BootId::current() })
    }
    /// Whether this exact process still runs (a zombie does not count): same boot,
    /// same pid, same start tick.
    pub fn alive(&self) -> bool {
        if let (Some(then), Some(now)) = (self.boot_id, BootId::current()) {
            if then != now {
                return false;
            }
        }
        matches!(proc_stat(self.pid), Some((t, s)) if t == self.start_time && s != 'Z' && s != 'X')
    }
}

/// A boot of the host: the kernel's random boot id (a UUID, new at every boot),
/// kept as its 128 bits so [`RunInfo`] stays `Copy`; written as the UUID text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootId(pub u128);

/// Where the kernel tells this boot's id.
pub const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

impl BootId {
    /// This boot's id (read once); `None` where /proc does not tell it.
    pub fn current() -> Option<BootId> {
        static CURRENT: std::sync::OnceLock<Option<BootId>> = std::sync::OnceLock::new();
        *CURRENT.get_or_init(|| std::fs::read_to_string(BOOT_ID_PATH).ok().and_then(|s| BootId::parse(&s)))
    }
    /// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hex digits, dashes optional).
    pub fn parse(s: &str) -> Option<BootId> {
        let hex: String = s.trim().chars().filter(|c| *c != '-').collect();
        (hex.len() == 32).then(|| u128::from_str_radix(&hex, 16).ok().map(BootId)).flatten()
    }
}

impl std::fmt::Display for BootId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = format!("{:032x}", self.0);
        write!(f, "{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
    }
}

impl Serialize for BootId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for BootId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        BootId::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("not a boot id: {s:?}")))
    }
}

/// What a container should be: what `start --all` (at boot) brings it back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Desired {
    /// `apply`, `start` (and `enable`) set it; a container without a record is one.
    #[default]
    Running,
    /// `stop` (and `disable`) set it: it stays down until started again.
    Stopped,
}

#[derive(Debug, Serialize, Deserialize)]
struct DesiredRecord {
    state: Desired,
}

/// What `dirs`' container should be; [`Desired::Running`] without a record (one an
/// older version applied) or with an unreadable one (said by the caller's command
/// when it matters: `start --all` starts it, which is what a record-less one gets).
pub fn desired(dirs: &Dirs) -> Desired {
    match read_json::<DesiredRecord>(&dirs.desired()) {
        Ok(Some(r)) => r.state,
        _ => Desired::Running,
    }
}

/// Record what the container should be (atomically, 0600 like the other state).
pub fn write_desired(dirs: &Dirs, state: Desired) -> Result<(), StateError> {
    let json = serde_json::to_vec(&DesiredRecord { state }).expect("desired state serializes");
    // It must survive a reboot (`start --all` reads it), so it is written durably,
    // and only when it changes: a `start` of a container to run costs no fsync.
    if crate::state::read_bytes(&dirs.desired()).ok().flatten().as_deref() == Some(json.as_slice()) {
        return Ok(());
    }
    write_private(&dirs.desired(), &json)
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The running PID 1 recorded for `dirs`, if it is still alive.
pub fn running(dirs: &Dirs) -> Option<RunInfo> {
    let info: RunInfo = read_json(&dirs.run_info()).ok()??;
    info.alive().then_some(info)
}

/// Record the plan an apply is about to carry out (`pending.json`).
pub fn write_pending(dirs: &Dirs, plan: &Plan) -> Result<(), StateError> {
    let json = serde_json::to_vec_pretty(plan).expect("plans always serialize");
    write_private(&dirs.pending(), &json)
}

/// Record `plan` as applied: `state.json` := the plan, then `pending.json` goes. The
/// only writer of `state.json`.
pub fn record_applied(dirs: &Dirs, plan: &Plan) -> Result<(), StateError> {
    let json = serde_json::to_vec_pretty(plan).expect("plans always serialize");
    write_private(&dirs.state(), &json)?;
    match std::fs::remove_file(dirs.pending()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(StateError::Write { path: dirs.pending(), source: e })
        }
        _ => Ok(()),
    }
}

pub fn write_run_info(dirs: &Dirs, info: &RunInfo) -> Result<(), StateError> {
    let json = serde_json::to_vec(info).expect("run info serializes");
    // A reboot ends the run it names: not worth two fsyncs on every start.
    crate::state::write_private_volatile(&dirs.run_info(), &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_a_changed_start_time_is_not() {
        let me = RunInfo::of(std::process::id() as i32).expect("own stat");
        assert!(me.alive());
        assert!(!RunInfo { start_time: me.start_time + 1, ..me }.alive());
    }

    #[test]
    fn a_record_of_another_boot_is_not_alive_and_an_old_record_still_parses() {
        let me = RunInfo::of(std::process::id() as i32).expect("own stat");
        assert!(me.boot_id.is_some(), "this host tells its boot id");
        let other = BootId(me.boot_id.unwrap().0 ^ 1);
        assert!(!RunInfo { boot_id: Some(other), ..me }.alive(), "same pid and tick, another boot");
        let text = serde_json::to_string(&me).unwrap();
        assert!(text.contains(&format!("\"boot_id\":\"{}\"", me.boot_id.unwrap())), "{text}");
        assert_eq!(serde_json::from_str::<RunInfo>(&text).unwrap(), me);
        // A record of an older version: no boot id, its pid and start tick count.
        let old = format!("{{\"pid\":{},\"start_time\":{},\"started_ms\":1}}", me.pid, me.start_time);
        let old: RunInfo = serde_json::from_str(&old).unwrap();
        assert_eq!(old.boot_id, None);
        assert!(old.alive());
        assert_eq!(BootId::parse(&other.to_string()), Some(other));
    }

    #[test]
    fn desired_state_defaults_to_running_and_records_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = StateRoot::new(dir.path()).container("want");
        dirs.create(dir.path()).unwrap();
        assert_eq!(desired(&dirs), Desired::Running);
        write_desired(&dirs, Desired::Stopped).unwrap();
        assert_eq!(desired(&dirs), Desired::Stopped);
        assert_eq!(std::fs::read_to_string(dirs.desired()).unwrap(), "{\"state\":\"stopped\"}");
        write_desired(&dirs, Desired::Running).unwrap();
        assert_eq!(desired(&dirs), Desired::Running);
    }

    #[test]
    fn the_default_root_owns_the_plain_table_and_other_roots_a_hashed_one() {
        assert_eq!(StateRoot::new(DEFAULT_ROOT).nft_table(), "container");
        let (a, b) = (StateRoot::new("/tmp/a").nft_table(), StateRoot::new("/tmp/b").nft_table());
        assert!(a.starts_with("container_") && a.len() == "container_".len() + 8, "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn host_objects_of_the_default_root_keep_their_names_and_other_roots_get_a_tag() {
        assert_eq!(StateRoot::new(DEFAULT_ROOT).host_key("web"), "web");
        let dir = tempfile::tempdir().unwrap();
        let a = StateRoot::new(dir.path()).host_key("web");
        let tag = StateRoot::new(dir.path()).nft_table().trim_start_matches("container_").to_string();
        assert_eq!(a, format!("web_{tag}"));
        // Spelled differently, the same folder is the same root.
        assert_eq!(StateRoot::new(dir.path().join(".")).host_key("web"), a);
        assert_ne!(StateRoot::new(dir.path().join("other")).host_key("web"), a);
    }

    #[test]
    fn recording_a_plan_as_applied_ends_the_pending_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = StateRoot::new(dir.path());
        let plan = crate::plan::compile::test_plan("name = \"rec\"\nbase = \"host\"\n");
        let dirs = root.container("rec");
        write_pending(&dirs, &plan).unwrap();
        assert!(dirs.pending().is_file() && root.applied("rec").unwrap().is_none());
        record_applied(&dirs, &plan).unwrap();
        assert!(!dirs.pending().exists());
        assert_eq!(root.applied("rec").unwrap(), Some(plan));
    }
}
