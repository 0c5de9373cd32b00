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

use crate::state::{read_json, write_atomic, StateError};
use serde::{Deserialize, Serialize};
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
