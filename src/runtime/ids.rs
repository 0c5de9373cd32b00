//! Host uid/gid ranges of the containers' user namespaces.
//!
//! Invariant: every container (under any state root on this host) that runs with a
//! user namespace has a range of [`SIZE`] host uids and gids of its own, recorded in
//! one host-wide registry ([`HOST_REGISTRY`]/`ranges.json`, changed only under its
//! flock and replaced atomically). Ranges never overlap each other, a uid or gid of
//! `/etc/passwd` or `/etc/group`, or a subordinate range of `/etc/subuid` or
//! `/etc/subgid`. A container keeps its range as long as its folder exists (so its
//! volumes, which belong to the range, stay right across destroy and re-creation);
//! the range is released when the folder goes (`destroy --volumes`), and entries
//! whose folder vanished otherwise (a deleted test root) are dropped at the next
//! allocation.
//!
//! Uid and gid ranges are the same numbers: inside ids `0..SIZE` map to host ids
//! `base..base + SIZE`.
//!
//! The same folder holds the host-wide address registry ([`AddressRegistry`],
//! `addresses.json`): the IPv4 and IPv6 address and the routed prefixes of every
//! container of every state root, running or stopped, so "auto" in one root skips
//! what another root's containers hold, and an address or prefix that overlaps any
//! other container's (any root) is refused before anything is recorded. The check
//! and the record are one step under the registry's flock: of two applies that claim
//! overlapping networks at the same time, in any two roots, exactly one wins.

use crate::exec::net::{covers, parse_addr, Network};
use crate::plan::pool::AddressPool;
use crate::state::{read_json, write_atomic, StateError};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// Where the registry lives: outside every state root, since ranges must not
/// overlap across state roots.
pub const HOST_REGISTRY: &str = "/var/lib/container-ids";
/// Ids per container (a full 16-bit id space inside).
pub const SIZE: u32 = 65536;
/// The first range starts here (as systemd-nspawn's and Incus' ranges, far above
/// any regular or subordinate host id), the last ends below 2^31.
pub const FIRST: u32 = 0x1000_0000;
pub const END: u32 = 0x7000_0000;

#[derive(Debug, thiserror::Error)]
pub enum IdsError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no free range of {SIZE} host uids left between {FIRST:#x} and {END:#x}")]
    Exhausted,
}

/// One container's range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeEntry {
    /// The state root (canonical path) and container name it belongs to.
    pub root: PathBuf,
    pub name: String,
    /// First host uid/gid; the container's root.
    pub base: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Ranges {
    ranges: Vec<RangeEntry>,
}

/// The registry of ranges (the host-wide one, or one in a test folder).
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
    /// Files with the host's own ids (passwd, group, subuid, subgid).
    etc: PathBuf,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> IdsError {
    let context = context.into();
    move |source| IdsError::Io { context, source }
}

/// The canonical form of a state root (it may not exist yet: then as given).
fn canonical(root: &Path) -> PathBuf {
    std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf())
}

impl Registry {
    pub fn host() -> Self {
        Registry { dir: PathBuf::from(HOST_REGISTRY), etc: PathBuf::from("/etc") }
    }

    pub fn at(dir: &Path, etc: &Path) -> Self {
        Registry { dir: dir.to_path_buf(), etc: etc.to_path_buf() }
    }

    fn file(&self) -> PathBuf {
        self.dir.join("ranges.json")
    }

    fn read(&self) -> Result<Ranges, IdsError> {
        Ok(read_json(&self.file())?.unwrap_or_default())
    }

    /// Like `read`, but an unreadable registry (`plan` by a user who is not root)
    /// reads as empty: such a user has no container with a range anyway.
    fn read_lenient(&self) -> Result<Ranges, IdsError> {
        match self.read() {
            Err(IdsError::State(StateError::Read { source, .. }))
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                Ok(Ranges::default())
            }
            r => r,
        }
    }

    fn lock(&self) -> Result<crate::runtime::layout::Lock, IdsError> {
        std::fs::create_dir_all(&self.dir).map_err(io(format!("creating {}", self.dir.display())))?;
        use std::os::unix::fs::PermissionsExt;
        // Readable by all, like every /proc/<pid>/uid_map; written by root only.
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o755))
            .map_err(io(format!("chmod {}", self.dir.display())))?;
        let path = self.dir.join(".lock");
        crate::runtime::layout::Lock::take(&path, || {}).map_err(io(format!("locking {}", path.display())))
    }

    /// The range of `name` under `root`, if it has one (reads only).
    pub fn lookup(&self, root: &Path, name: &str) -> Result<Option<u32>, IdsError> {
        let root = canonical(root);
        Ok(self.read_lenient()?.ranges.into_iter().find(|e| e.root == root && e.name == name).map(|e| e.base))
    }

    /// The range of `name` under `root`: the one it has, or a new one.
    pub fn allocate(&self, root: &Path, name: &str) -> Result<u32, IdsError> {
        let root = canonical(root);
        let _lock = self.lock()?;
        let mut r = self.read()?;
        if let Some(e) = r.ranges.iter().find(|e| e.root == root && e.name == name) {
            return Ok(e.base);
        }
        // Ranges of containers whose folder is gone are free again.
        r.ranges.retain(|e| e.root.join("containers").join(&e.name).exists());
        let host = host_ids(&self.etc);
        let taken = |b: u32| {
            let end = b as u64 + SIZE as u64;
            r.ranges.iter().any(|e| e.base == b)
                || host.iter().any(|&(s, n)| (s as u64) < end && s as u64 + n as u64 > b as u64)
        };
        let mut base = FIRST;
        while taken(base) {
            base = base.checked_add(SIZE).filter(|b| *b < END).ok_or(IdsError::Exhausted)?;
        }
        r.ranges.push(RangeEntry { root, name: name.to_string(), base });
        r.ranges.sort_by_key(|e| e.base);
        let json = serde_json::to_vec_pretty(&r).expect("ranges serialize");
        write_atomic(&self.file(), &json)?;
        Ok(base)
    }

    /// Give the range of `name` under `root` back (its volumes are gone).
    pub fn release(&self, root: &Path, name: &str) -> Result<(), IdsError> {
        let root = canonical(root);
        let _lock = self.lock()?;
        let mut r = self.read()?;
        let before = r.ranges.len();
        r.ranges.retain(|e| !(e.root == root && e.name == name));
        if r.ranges.len() != before {
            let json = serde_json::to_vec_pretty(&r).expect("ranges serialize");
            write_atomic(&self.file(), &json)?;
        }
        Ok(())
    }
}

/// One container's addresses and routed prefixes in the host-wide address registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressEntry {
    /// The state root (canonical path) and container name they belong to.
    pub root: PathBuf,
    pub name: String,
    #[serde(default)]
    pub ipv4: Option<Ipv4Addr>,
    #[serde(default)]
    pub ipv6: Option<Ipv6Addr>,
    /// Its routed prefixes (`network.prefixes`), as `address/length`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<String>,
}

impl AddressEntry {
    /// Its networks, each with the field it comes from and as a message shows it:
    /// the /32, the /128, then the prefixes (one the registry cannot read, which only
    /// a hand edit makes, is skipped).
    pub fn networks(&self) -> Vec<(&'static str, String, Network)> {
        let mut out = Vec::new();
        out.extend(self.ipv4.map(|a| ("network.ipv4", a.to_string(), (IpAddr::V4(a), 32))));
        out.extend(self.ipv6.map(|a| ("network.ipv6", a.to_string(), (IpAddr::V6(a), 128))));
        for p in &self.prefixes {
            if let Ok(n) = parse_addr(p) {
                out.push(("network.prefixes", p.clone(), n));
            }
        }
        out
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Addresses {
    addresses: Vec<AddressEntry>,
}

/// An address or prefix that overlaps one another container (of any state root)
/// holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressTaken {
    /// The field and network claimed (`network.prefixes`, `100.75.3.0/28`).
    pub field: &'static str,
    pub mine: String,
    /// The holder's field and network.
    pub their_field: &'static str,
    pub theirs: String,
    pub root: PathBuf,
    pub name: String,
}

impl std::fmt::Display for AddressTaken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let holder = format!("container `{}` under state root {}", self.name, self.root.display());
        if self.mine == self.theirs && self.field == self.their_field && self.field != "network.prefixes" {
            write!(f, "{} is already used by {holder}", self.mine)
        } else {
            write!(f, "{} {} overlaps {} {} of {holder}", self.field, self.mine, self.their_field, self.theirs)
        }
    }
}

/// The host-wide registry of the addresses every state root's containers hold
/// (`addresses.json` next to `ranges.json`, changed only under its own flock and
/// replaced atomically), so two roots never hand out one address: each root's pool
/// (`pool.json`) is its own, and this is what the roots see of each other.
///
/// A root's addresses are the copy of its pool made at its last [`record`]
/// (`AddressRegistry::record`), each container's prefixes those of its last
/// recorded apply; entries whose container folder vanished (a deleted test root) are
/// dropped at the next record, a destroyed container's by [`release`]
/// (`AddressRegistry::release`). A stopped container keeps its entry: it gets its
/// routes back on start.
#[derive(Debug, Clone)]
pub struct AddressRegistry {
    dir: PathBuf,
}

impl AddressRegistry {
    pub fn host() -> Self {
        AddressRegistry { dir: PathBuf::from(HOST_REGISTRY) }
    }

    pub fn at(dir: &Path) -> Self {
        AddressRegistry { dir: dir.to_path_buf() }
    }

    fn file(&self) -> PathBuf {
        self.dir.join("addresses.json")
    }

    fn read(&self) -> Result<Addresses, IdsError> {
        Ok(read_json(&self.file())?.unwrap_or_default())
    }

    fn write(&self, a: &Addresses) -> Result<(), IdsError> {
        let json = serde_json::to_vec_pretty(a).expect("addresses serialize");
        Ok(write_atomic(&self.file(), &json)?)
    }

    fn lock(&self) -> Result<crate::runtime::layout::Lock, IdsError> {
        std::fs::create_dir_all(&self.dir).map_err(io(format!("creating {}", self.dir.display())))?;
        let path = self.dir.join(".addresses.lock");
        crate::runtime::layout::Lock::take(&path, || {}).map_err(io(format!("locking {}", path.display())))
    }

    /// The addresses containers of other state roots hold (reads only; an unreadable
    /// registry reads as empty, as for `plan` by a user who is not root).
    pub fn others(&self, root: &Path) -> Result<Vec<AddressEntry>, IdsError> {
        let root = canonical(root);
        let all = match self.read() {
            Err(IdsError::State(StateError::Read { source, .. }))
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                Addresses::default()
            }
            r => r?,
        };
        Ok(all.addresses.into_iter().filter(|e| e.root != root && live(e)).collect())
    }

    /// Record `pool`, the pool of `root` after an apply of `name` added or changed its
    /// addresses, and `prefixes`, `name`'s routed prefixes: refused (and nothing
    /// written) when one of `name`'s networks overlaps (not only equals) an address or
    /// prefix of any other container, of another root or of this one. Check and
    /// record are one step under the registry's flock. This root's other entries keep
    /// their prefixes and take their addresses from `pool`.
    pub fn record(&self, root: &Path, name: &str, pool: &AddressPool, prefixes: &[String]) -> Result<(), RecordError> {
        let root = canonical(root);
        let _lock = self.lock()?;
        let mut all = self.read()?;
        all.addresses.retain(live);
        let old_prefixes = |n: &str| {
            all.addresses.iter().find(|e| e.root == root && e.name == n).map(|e| e.prefixes.clone()).unwrap_or_default()
        };
        let names: std::collections::BTreeSet<&String> = pool.ipv4.keys().chain(pool.ipv6.keys()).collect();
        let mut ours: Vec<AddressEntry> = names
            .into_iter()
            .filter(|n| n.as_str() != name)
            .map(|n| AddressEntry {
                root: root.clone(),
                name: n.clone(),
                ipv4: pool.ipv4.get(n).copied(),
                ipv6: pool.ipv6.get(n).copied(),
                prefixes: old_prefixes(n),
            })
            .collect();
        let me = AddressEntry {
            root: root.clone(),
            name: name.to_string(),
            ipv4: pool.ipv4.get(name).copied(),
            ipv6: pool.ipv6.get(name).copied(),
            prefixes: prefixes.to_vec(),
        };
        let theirs = all.addresses.iter().filter(|e| e.root != root).chain(ours.iter());
        for e in theirs {
            for (field, mine, m) in me.networks() {
                for (their_field, shown, t) in e.networks() {
                    if covers(m, t) || covers(t, m) {
                        return Err(RecordError::Taken(Box::new(AddressTaken {
                            field,
                            mine,
                            their_field,
                            theirs: shown,
                            root: e.root.clone(),
                            name: e.name.clone(),
                        })));
                    }
                }
            }
        }
        all.addresses.retain(|e| e.root != root);
        if me.ipv4.is_some() || me.ipv6.is_some() || !me.prefixes.is_empty() {
            ours.push(me);
        }
        all.addresses.extend(ours);
        all.addresses.sort_by(|a, b| (&a.root, &a.name).cmp(&(&b.root, &b.name)));
        Ok(self.write(&all)?)
    }

    /// Forget the addresses of `name` under `root` (destroyed).
    pub fn release(&self, root: &Path, name: &str) -> Result<(), IdsError> {
        let root = canonical(root);
        let _lock = self.lock()?;
        let mut all = self.read()?;
        let before = all.addresses.len();
        all.addresses.retain(|e| !(e.root == root && e.name == name));
        if all.addresses.len() != before {
            self.write(&all)?;
        }
        Ok(())
    }
}

/// Whether an entry's container still has its folder.
fn live(e: &AddressEntry) -> bool {
    e.root.join("containers").join(&e.name).exists()
}

/// Why [`AddressRegistry::record`] did not record.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Ids(#[from] IdsError),
    #[error("{0}")]
    Taken(Box<AddressTaken>),
}

impl From<StateError> for RecordError {
    fn from(e: StateError) -> Self {
        RecordError::Ids(IdsError::State(e))
    }
}

/// Host ids in use, as (start, count): every uid of passwd and gid of group, and
/// every subordinate range of subuid and subgid.
fn host_ids(etc: &Path) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for (file, field) in [("passwd", 2), ("group", 2)] {
        let text = std::fs::read_to_string(etc.join(file)).unwrap_or_default();
        for line in text.lines() {
            if let Some(id) = line.split(':').nth(field).and_then(|s| s.parse::<u32>().ok()) {
                out.push((id, 1));
            }
        }
    }
    for file in ["subuid", "subgid"] {
        let text = std::fs::read_to_string(etc.join(file)).unwrap_or_default();
        for line in text.lines() {
            let mut f = line.split(':').skip(1);
            if let (Some(Ok(s)), Some(Ok(n))) = (f.next().map(str::parse::<u32>), f.next().map(str::parse::<u32>)) {
                out.push((s, n));
            }
        }
    }
    out
}

/// The host uid of the container's root, as `status` and `plan` say it.
pub fn describe(base: Option<u32>) -> String {
    match base {
        Some(b) => format!("host uids/gids {b}-{} (container root is host uid {b})", b as u64 + SIZE as u64 - 1),
        None => "off (container root is host root)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Registry, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let etc = d.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("passwd"), "root:x:0:0::/root:/bin/sh\nodd:x:268500000:1::/:/bin/sh\n").unwrap();
        std::fs::write(etc.join("group"), "root:x:0:\n").unwrap();
        std::fs::write(etc.join("subuid"), "alice:268501092:65536\n").unwrap();
        let reg = Registry::at(&d.path().join("ids"), &etc);
        let root = d.path().join("state");
        (d, reg, root)
    }

    #[test]
    fn ranges_are_stable_distinct_and_avoid_host_ids() {
        let (_d, reg, root) = setup();
        for n in ["a", "b", "c"] {
            std::fs::create_dir_all(root.join("containers").join(n)).unwrap();
        }
        let a = reg.allocate(&root, "a").unwrap();
        // 0x10000000 holds uid 268500000 of passwd, the next two alice's subuids.
        assert_eq!(a, FIRST + 3 * SIZE);
        assert_eq!(reg.allocate(&root, "a").unwrap(), a, "stable");
        let b = reg.allocate(&root, "b").unwrap();
        assert_eq!(b, a + SIZE);
        assert_eq!(reg.lookup(&root, "b").unwrap(), Some(b));
        reg.release(&root, "a").unwrap();
        assert_eq!(reg.lookup(&root, "a").unwrap(), None);
        assert_eq!(reg.allocate(&root, "c").unwrap(), a, "a released range is reused");
        // Another state root's container of the same name gets its own range.
        let other = root.with_file_name("other");
        std::fs::create_dir_all(other.join("containers/b")).unwrap();
        assert_ne!(reg.allocate(&other, "b").unwrap(), b);
    }

    #[test]
    fn an_address_another_root_holds_is_refused_and_seen_by_the_others() {
        let d = tempfile::tempdir().unwrap();
        let reg = AddressRegistry::at(&d.path().join("ids"));
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        for r in [&a, &b] {
            std::fs::create_dir_all(r.join("containers/web")).unwrap();
        }
        let mut pa = AddressPool::default();
        pa.ipv4.insert("web".into(), Ipv4Addr::new(100, 72, 0, 2));
        reg.record(&a, "web", &pa, &[]).unwrap();
        let seen = reg.others(&b).unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!((seen[0].name.as_str(), seen[0].ipv4), ("web", Some(Ipv4Addr::new(100, 72, 0, 2))));
        assert!(reg.others(&a).unwrap().is_empty(), "a root's own entries are its pool's business");
        let before = std::fs::read(reg.file()).unwrap();
        match reg.record(&b, "web", &pa, &[]) {
            Err(RecordError::Taken(t)) => {
                assert!(t.to_string().contains("100.72.0.2") && t.to_string().contains(&a.display().to_string()))
            }
            other => panic!("taken address recorded: {other:?}"),
        }
        assert_eq!(std::fs::read(reg.file()).unwrap(), before, "a refused record writes nothing");
        // Released (destroyed), or the root gone: free again.
        reg.release(&a, "web").unwrap();
        reg.record(&b, "web", &pa, &[]).unwrap();
        std::fs::remove_dir_all(&b).unwrap();
        assert!(reg.others(&a).unwrap().is_empty());
        reg.record(&a, "web", &pa, &[]).unwrap();
    }

    #[test]
    fn an_overlap_with_any_other_containers_address_or_prefix_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let reg = AddressRegistry::at(&d.path().join("ids"));
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        for (r, n) in [(&a, "router"), (&a, "web"), (&b, "web"), (&b, "other")] {
            std::fs::create_dir_all(r.join("containers").join(n)).unwrap();
        }
        let pool = |name: &str, v4: [u8; 4]| {
            let mut p = AddressPool::default();
            p.ipv4.insert(name.into(), Ipv4Addr::from(v4));
            p
        };
        // A's router: 100.75.9.1 routing 100.75.9.64/28 (stopped or not: it is recorded).
        let pa = pool("router", [100, 75, 9, 1]);
        reg.record(&a, "router", &pa, &["100.75.9.64/28".into()]).unwrap();
        assert_eq!(reg.others(&b).unwrap()[0].prefixes, ["100.75.9.64/28"]);
        let refused = |r: Result<(), RecordError>, words: &[&str]| match r {
            Err(RecordError::Taken(t)) => {
                let m = t.to_string();
                for w in words {
                    assert!(m.contains(w), "{m} does not say {w}");
                }
            }
            other => panic!("an overlap was recorded: {other:?}"),
        };
        let before = std::fs::read(reg.file()).unwrap();
        let a_shown = a.display().to_string();
        // B: an address inside A's prefix, a prefix over A's address, an overlapping
        // prefix (neither equal nor an address).
        refused(reg.record(&b, "web", &pool("web", [100, 75, 9, 70]), &[]), &["100.75.9.64/28", "router", &a_shown]);
        refused(
            reg.record(&b, "web", &pool("web", [100, 75, 9, 200]), &["100.75.9.0/30".into()]),
            &["100.75.9.0/30", "100.75.9.1", "router", &a_shown],
        );
        refused(
            reg.record(&b, "web", &pool("web", [100, 75, 9, 200]), &["100.75.9.0/25".into()]),
            &["100.75.9.0/25", "overlaps"],
        );
        // The same root: another container's prefix is refused too.
        let mut pa2 = pa.clone();
        pa2.ipv4.insert("web".into(), Ipv4Addr::new(100, 75, 9, 66));
        refused(reg.record(&a, "web", &pa2, &[]), &["router", "100.75.9.64/28"]);
        assert_eq!(std::fs::read(reg.file()).unwrap(), before, "a refused record writes nothing");
        // Apart: recorded, and A's router keeps its prefix when A records another.
        reg.record(&b, "web", &pool("web", [100, 75, 9, 80]), &["100.75.9.96/28".into()]).unwrap();
        let mut pa3 = pa.clone();
        pa3.ipv4.insert("web".into(), Ipv4Addr::new(100, 75, 9, 2));
        reg.record(&a, "web", &pa3, &[]).unwrap();
        let seen = reg.others(&b).unwrap();
        let router = seen.iter().find(|e| e.name == "router").unwrap();
        assert_eq!(router.prefixes, ["100.75.9.64/28"]);
        // A re-apply of the same container with its own networks is no overlap.
        reg.record(&a, "router", &pa3, &["100.75.9.64/28".into()]).unwrap();
        // Released: free for the other root.
        reg.release(&a, "router").unwrap();
        let mut pb = pool("web", [100, 75, 9, 80]);
        pb.ipv4.insert("other".into(), Ipv4Addr::new(100, 75, 9, 65));
        reg.record(&b, "other", &pb, &[]).unwrap();
    }

    #[test]
    fn ranges_of_vanished_containers_are_freed() {
        let (_d, reg, root) = setup();
        std::fs::create_dir_all(root.join("containers/a")).unwrap();
        let a = reg.allocate(&root, "a").unwrap();
        std::fs::remove_dir_all(root.join("containers/a")).unwrap();
        std::fs::create_dir_all(root.join("containers/b")).unwrap();
        assert_eq!(reg.allocate(&root, "b").unwrap(), a);
        assert_eq!(reg.lookup(&root, "a").unwrap(), None);
    }
}
