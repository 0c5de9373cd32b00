//! Where a container's state lives under the state root, and who may change it.
//!
//! Invariant: every path of a container comes from [`Dirs`]; every command that
//! changes a container holds its [`Lock`]; `run.json` names the running PID 1 by pid
//! *and* start time, so a recycled pid is never mistaken for the container.
//!
//! Layout of `containers/<name>/`:
//! - `state.json`   the last applied plan (written last, atomically)
//! - `pending.json` the plan an apply is carrying out; present only while it runs or
//!   after it was interrupted, so the next command knows to recreate and clean up
//! - `run.json`     pid and start time of the running PID 1
//! - `run/`         bound at `/run/container` inside: supervisor.json, status.json,
//!   control.sock, logs/
//! - `secrets/`     one 0600 file per generated secret (bound read-only inside)
//! - `files/`       rendered files, each bound onto its container path
//! - `volumes/`     volumes: kept by `destroy` unless `--volumes`
//! - `.lock`        flock(2) target

pub use crate::exec::lock::Lock;
use crate::state::{write_atomic, StateError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The container's run folder as seen from inside.
pub const RUN_IN: &str = "/run/container";

#[derive(Debug, Clone)]
pub struct Dirs {
    pub root: PathBuf,
    pub name: String,
}

impl Dirs {
    pub fn new(state_root: &Path, name: &str) -> Self {
        Dirs { root: state_root.join("containers").join(name), name: name.to_string() }
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
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn logs(&self) -> PathBuf {
        self.run().join("logs")
    }
    pub fn supervisor_config(&self) -> PathBuf {
        self.run().join("supervisor.json")
    }
    pub fn secrets(&self) -> PathBuf {
        self.root.join("secrets")
    }
    pub fn files(&self) -> PathBuf {
        self.root.join("files")
    }
    /// Host path of a rendered file (`path` is an absolute container path).
    pub fn file(&self, path: &str) -> PathBuf {
        self.files().join(path.trim_start_matches('/'))
    }
    pub fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }
    pub fn volume(&self, source: &str) -> PathBuf {
        self.volumes().join(source)
    }
}

/// The running PID 1 of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    pub pid: i32,
    /// Field 22 of /proc/<pid>/stat (clock ticks since boot): with the pid it names
    /// one process for good.
    pub start_time: u64,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_ms: u64,
}

/// (start time, state letter) of a live process.
fn proc_stat(pid: i32) -> Option<(u64, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields follow the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    Some((fields.get(19)?.parse().ok()?, state))
}

impl RunInfo {
    pub fn of(pid: i32) -> Option<RunInfo> {
        let (start_time, _) = proc_stat(pid)?;
        Some(RunInfo { pid, start_time, started_ms: now_ms() })
    }
    /// Whether this exact process still runs (a zombie does not count).
    pub fn alive(&self) -> bool {
        matches!(proc_stat(self.pid), Some((t, s)) if t == self.start_time && s != 'Z' && s != 'X')
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The running PID 1 recorded for `dirs`, if it is still alive.
pub fn running(dirs: &Dirs) -> Option<RunInfo> {
    let bytes = std::fs::read(dirs.run_info()).ok()?;
    let info: RunInfo = serde_json::from_slice(&bytes).ok()?;
    info.alive().then_some(info)
}

pub fn write_run_info(dirs: &Dirs, info: &RunInfo) -> Result<(), StateError> {
    let json = serde_json::to_vec(info).expect("run info serializes");
    write_atomic(&dirs.run_info(), &json)
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
}
