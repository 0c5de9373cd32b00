//! Who uses which layer: the refs `gc` and `images` read.
//!
//! Invariant: a container uses a layer while its `rootfs.json` (written by `apply`
//! under the cache lock) names it; a ref in the cache (`refs/<id>/…`) only points
//! at that record, so a ref whose container is gone or moved on is simply stale and
//! removed when read. A layer some mount namespace has mounted is in use too (which
//! `exec::build::mounted_overlay_lowers` reads from the kernel).

use super::{io, remove_tree, BuildUi, Cache, LayerMeta};
use crate::runtime::layout::Dirs;
use crate::runtime::RunError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Which layers a container's root is made of (`containers/<name>/rootfs.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootfsRecord {
    pub cache: PathBuf,
    /// Topmost first.
    pub layers: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LayerRef {
    root: PathBuf,
    name: String,
}

impl Cache {
    fn ref_path(&self, id: &str, root: &Path, name: &str) -> PathBuf {
        use sha2::Digest;
        let h = sha2::Sha256::digest(root.as_os_str().as_encoded_bytes());
        let h: String = h.iter().take(6).map(|b| format!("{b:02x}")).collect();
        self.dir.join("refs").join(id).join(format!("{h}-{name}.json"))
    }

    /// Record that container `name` under `root` uses `ids` (and write its
    /// `rootfs.json`, which is what makes the refs count). Called with the lock held.
    pub(super) fn record_use(&self, dirs: &Dirs, state_root: &Path, ids: &[String]) -> Result<(), RunError> {
        for id in ids {
            let p = self.ref_path(id, state_root, &dirs.name);
            let r = LayerRef { root: state_root.to_path_buf(), name: dirs.name.clone() };
            crate::state::write_atomic(&p, &serde_json::to_vec(&r).expect("ref serializes"))?;
        }
        let rec = RootfsRecord { cache: self.dir.clone(), layers: ids.to_vec() };
        crate::state::write_atomic(&dirs.rootfs_record(), &serde_json::to_vec_pretty(&rec).expect("serializes"))?;
        Ok(())
    }

    /// The containers (state root, name) whose root uses layer `id` now.
    pub fn users(&self, id: &str) -> Vec<(PathBuf, String)> {
        let Ok(rd) = std::fs::read_dir(self.dir.join("refs").join(id)) else { return Vec::new() };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let Ok(Some(r)) = crate::state::read_json::<LayerRef>(&e.path()) else { continue };
            if !crate::runtime::layout::is_name(&r.name) {
                continue;
            }
            let dirs = Dirs::new(&r.root, &r.name);
            let live = read_rootfs_record(&dirs)
                .is_some_and(|rec| rec.cache == self.dir && rec.layers.iter().any(|l| l == id));
            if live {
                out.push((r.root, r.name));
            } else {
                // A container that was destroyed or moved to other layers.
                let _ = std::fs::remove_file(e.path());
            }
        }
        out.sort();
        out
    }

    /// Remove every layer no container uses and no mount namespace has mounted, and
    /// leftovers of interrupted builds. Returns the removed layers.
    pub fn gc(&self, dry_run: bool, ui: &mut dyn BuildUi) -> Result<Vec<LayerMeta>, RunError> {
        let _lock = self.lock(ui)?;
        let layers = self.list();
        let mounted = crate::exec::build::mounted_overlay_lowers();
        let mut keep: BTreeSet<String> = BTreeSet::new();
        for l in &layers {
            let root = self.root_of(&l.id);
            if !self.users(&l.id).is_empty() || mounted.iter().any(|m| m == &root) {
                keep.insert(l.id.clone());
                keep.extend(l.parent.clone());
            }
        }
        let gone: Vec<LayerMeta> = layers.into_iter().filter(|l| !keep.contains(&l.id)).collect();
        if dry_run {
            return Ok(gone);
        }
        for l in &gone {
            // Renamed first, so a half-removed layer never looks built.
            let trash = self.dir.join("layers").join(format!("{}.removing", l.id));
            std::fs::rename(self.layer_dir(&l.id), &trash).map_err(io(format!("removing layer {}", l.id)))?;
            remove_tree(&trash)?;
            let _ = std::fs::remove_dir_all(self.dir.join("refs").join(&l.id));
        }
        if let Ok(rd) = std::fs::read_dir(self.dir.join("layers")) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                if n.ends_with(".partial") || n.ends_with(".removing") {
                    remove_tree(&e.path())?;
                }
            }
        }
        Ok(gone)
    }
}

pub fn read_rootfs_record(dirs: &Dirs) -> Option<RootfsRecord> {
    crate::state::read_json(&dirs.rootfs_record()).ok().flatten()
}
