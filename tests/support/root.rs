//! A state root of one test ([`OwnRoot`]), for suites whose commands act on a whole
//! root (`start --all`, a damaged `pool.json`) and so must not share the binary's.

use crate::support::cli::{container_on, stdout_of};
use crate::support::host::host;
use container::runtime::layout::{RunInfo, StateRoot};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

/// A state root of one test, with its containers: each destroyed (with volumes)
/// and the root's nftables table deleted when dropped.
pub struct OwnRoot {
    dir: tempfile::TempDir,
    names: Vec<String>,
    specs: tempfile::TempDir,
}

impl OwnRoot {
    pub fn new() -> OwnRoot {
        let dir = tempfile::Builder::new().prefix("ctroot").tempdir().expect("tempdir");
        OwnRoot { dir, names: Vec::new(), specs: tempfile::tempdir().expect("tempdir") }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn cmd(&self, args: &[&str]) -> Output {
        container_on(self.path()).args(args).stdin(Stdio::null()).output().expect("run container")
    }
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        stdout_of(&format!("container {args:?}"), self.cmd(args))
    }
    /// Apply a `host`-base container `name` with spec `body`, which must succeed.
    #[track_caller]
    pub fn apply(&mut self, name: &str, body: &str) {
        let out = self.apply_out(name, body);
        stdout_of(&format!("apply {name}"), out);
    }
    /// Apply a `host`-base container `name` with spec `body`; its output.
    pub fn apply_out(&mut self, name: &str, body: &str) -> Output {
        let spec = self.specs.path().join(format!("{name}.toml"));
        std::fs::write(&spec, format!("name = \"{name}\"\nbase = \"host\"\n{body}")).unwrap();
        if !self.names.iter().any(|n| n == name) {
            self.names.push(name.to_string());
        }
        self.cmd(&["apply", spec.to_str().unwrap()])
    }
    pub fn dirs(&self, name: &str) -> PathBuf {
        self.path().join("containers").join(name)
    }
    pub fn key(&self, name: &str) -> String {
        StateRoot::new(self.path()).host_key(name)
    }
    pub fn run_info(&self, name: &str) -> Option<RunInfo> {
        let text = std::fs::read(self.dirs(name).join("run.json")).ok()?;
        serde_json::from_slice(&text).ok()
    }
    pub fn write_run_info(&self, name: &str, info: &RunInfo) {
        std::fs::write(self.dirs(name).join("run.json"), serde_json::to_vec(info).unwrap()).unwrap();
    }
    pub fn state(&self, name: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["status", name, "--json"])).unwrap();
        v["state"].as_str().unwrap_or_default().to_string()
    }
}

impl Drop for OwnRoot {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = self.cmd(&["destroy", n, "--volumes"]);
        }
        let table = StateRoot::new(self.path()).nft_table();
        let _ = host(&["nft", "delete", "table", "inet", &table]);
    }
}
