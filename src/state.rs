//! The state root: what was last applied, and the address pool.
//!
//! Invariant: files under the root are only ever replaced atomically (write a temp
//! file, fsync, rename, fsync the folder), so a crash leaves the old or the new
//! version, never a torn one. Layout: `containers/<name>/state.json` (the last
//! applied plan) and `pool.json` (addresses in use).

use crate::plan::pool::AddressPool;
use crate::plan::Plan;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const DEFAULT_ROOT: &str = "/var/lib/container";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is damaged: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

#[derive(Debug, Clone)]
pub struct StateRoot {
    pub root: PathBuf,
}

impl StateRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateRoot { root: root.into() }
    }

    pub fn container_dir(&self, name: &str) -> PathBuf {
        self.root.join("containers").join(name)
    }

    fn state_file(&self, name: &str) -> PathBuf {
        self.container_dir(name).join("state.json")
    }

    /// The plan last applied to `name`; `None` when it was never applied.
    pub fn applied(&self, name: &str) -> Result<Option<Plan>, StateError> {
        read_json(&self.state_file(name))
    }

    /// Record `plan` as applied.
    pub fn record_applied(&self, plan: &Plan) -> Result<(), StateError> {
        let json = serde_json::to_vec_pretty(plan).expect("plans always serialize");
        write_atomic(&self.state_file(&plan.name), &json)
    }

    pub fn pool(&self) -> Result<AddressPool, StateError> {
        Ok(read_json(&self.root.join("pool.json"))?.unwrap_or_default())
    }

    pub fn save_pool(&self, pool: &AddressPool) -> Result<(), StateError> {
        let json = serde_json::to_vec_pretty(pool).expect("pools always serialize");
        write_atomic(&self.root.join("pool.json"), &json)
    }
}

/// Read a JSON file of the state root; `None` when it does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateError::Parse { path: path.to_path_buf(), source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Read { path: path.to_path_buf(), source }),
    }
}

/// Replace `path` with `bytes` so that readers see the old or the new file only.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let err = |source| StateError::Write { path: path.to_path_buf(), source };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("state")));
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
