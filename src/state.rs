//! State files: how every file of the state and cache trees is read and written.
//!
//! Invariant: a file there is only ever replaced atomically (write a temp file of a
//! random name, fsync, rename, fsync the folder), so a crash leaves the old or the new
//! version, never a torn one. The records of the present run alone (`run.json`,
//! `supervisor.json`), which a reboot makes stale, skip both fsyncs
//! ([`write_private_volatile`]): readers still see the old or the new file. Which files exist and where is decided in one place,
//! `runtime::layout` (the state root) and `runtime::layers::Cache` (the cache);
//! docs/ARCHITECTURE.md, "State layout", lists them.
//!
//! Every read and write goes through `exec::beneath`, anchored at the file's folder
//! (opened by its path, which the host trusts): the file itself is never followed if
//! it is a symlink, must be a regular file (a FIFO cannot hang a reader) and is at
//! most `MAX_STATE_FILE` bytes; a temp name planted next to it is never written
//! through. That is what makes the files of a container's run folder — which the
//! container's root owns — safe to read and replace from the host; a file deeper in
//! that folder is read with its own anchor at the run folder (`Dirs::run`).

use crate::exec::beneath::{self, MAX_STATE_FILE};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is damaged: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// The bytes of a file of the state or cache tree (at most `MAX_STATE_FILE`); `None`
/// when it does not exist.
pub fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>, StateError> {
    let err = |source| StateError::Read { path: path.to_path_buf(), source };
    let (dir, name) = match beneath::split(path) {
        Ok(x) => x,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e)),
    };
    dir.read(&name, MAX_STATE_FILE).map_err(err)
}

/// Read a JSON file of the state or cache tree; `None` when it does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    match read_bytes(path)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateError::Parse { path: path.to_path_buf(), source }),
        None => Ok(None),
    }
}

/// Replace `path` with `bytes` so that readers see the old or the new file only.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    // 0644 as `File::create` under the usual umask made them: the registry of id
    // ranges is read by others than host root.
    write_atomic_mode(path, bytes, 0o644)
}

/// [`write_atomic`] of a file that is host root's alone (0600 from its creation on):
/// plans hold the services' environment in clear.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    write_atomic_mode(path, bytes, 0o600)
}

/// [`write_private`] without the fsyncs: still atomic for readers, not durable
/// across a power cut. Only for a file a reboot makes stale anyway (a record of the
/// present run: `run.json`) or that the next start writes again (`supervisor.json`):
/// losing it to a crash of the machine loses nothing.
pub fn write_private_volatile(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    replace(path, bytes, 0o600, false)
}

fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StateError> {
    replace(path, bytes, mode, true)
}

fn replace(path: &Path, bytes: &[u8], mode: u32, durable: bool) -> Result<(), StateError> {
    let err = |source| StateError::Write { path: path.to_path_buf(), source };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let (dir, name) = beneath::split(path).map_err(err)?;
    match durable {
        true => dir.write_atomic(&name, bytes, mode),
        false => dir.write_volatile(&name, bytes, mode),
    }
    .map_err(err)
}
