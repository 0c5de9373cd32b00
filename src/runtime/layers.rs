//! The layer cache: build a plan's root once, reuse it after, know who uses what.
//!
//! Invariant: a folder `layers/<id>/` is complete or absent. A layer is built in
//! `layers/<id>.partial/` and renamed into place only after every step worked and its
//! `layer.json` is written; a failed build removes the partial folder and points at
//! its log. Builds and `gc` hold the cache lock, so they never overlap. A layer is in
//! use while a container's `rootfs.json` (any state root; see the refs below) names
//! it or any mount namespace on the host has it mounted; `gc` removes nothing else.
//!
//! Cache layout (default `/var/cache/container`, `--cache` / `CONTAINER_CACHE`):
//! - `layers/<id>/root/`, `layers/<id>/layer.json`  built layers (ids: `plan::layer`)
//! - `logs/<id>.log`        the full log of a layer's last build
//! - `apt/archives/`        downloaded .debs, shared by every build (and debootstrap)
//! - `apt/lists/<base id>/` apt's package lists per base
//! - `downloads/<sha256>`   fetched tarballs
//! - `refs/<id>/<root hash>-<name>.json`  which containers (state root + name) use a layer
//! - `.lock`

use super::layout::{now_ms, Dirs, Lock};
use super::RunError;
use crate::exec::build::{self, BuildError, LayerFs, StepNet};
use crate::plan::layer::{apt_sources, describe_step, package_commands, stack, LayerCommand, LayerStack, APT_SOURCES};
use crate::plan::types::{BuildStep, Layer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod usage;
pub use usage::{read_rootfs_record, RootfsRecord};

pub const DEFAULT_CACHE: &str = "/var/cache/container";

/// What a built layer is, stored as `layer.json` next to its root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerMeta {
    pub id: String,
    /// "base" (debootstrap) or "packages" (apt and build steps over a base).
    pub kind: String,
    /// The layer below (a package layer's base).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub suite: String,
    pub mirror: String,
    /// The mirror of `<suite>-security` (empty for a layer built before it was listed).
    #[serde(default)]
    pub security_mirror: String,
    pub arch: String,
    #[serde(default)]
    pub packages: Vec<String>,
    #[serde(default)]
    pub steps: Vec<String>,
    pub created_ms: u64,
    pub build_secs: f64,
    /// Bytes on disk.
    pub size: u64,
}

/// How a build shows its progress: a bar on a terminal, plain lines otherwise.
pub trait BuildUi {
    /// A line for the user (also goes to the log).
    fn say(&mut self, line: &str);
    /// Step `n` of `total` begins.
    fn begin(&mut self, n: usize, total: usize, what: &str);
    /// The running step has run `elapsed`; `last` is the log's last line.
    fn tick(&mut self, elapsed: Duration, last: &str);
    /// The running step is done.
    fn end(&mut self, secs: f64);
}

/// A plan's root, ready: its layers' ids and root folders, topmost first.
#[derive(Debug, Clone)]
pub struct Ensured {
    pub ids: Vec<String>,
    pub roots: Vec<PathBuf>,
    /// Layers this call built (empty: everything was reused).
    pub built: Vec<String>,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let context = context.into();
    move |source| RunError::Io { context, source }
}

fn bio(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
    let context = context.into();
    move |source| BuildError::Io { context, source }
}

#[derive(Debug, Clone)]
pub struct Cache {
    pub dir: PathBuf,
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Cache { dir: dir.into() }
    }
    fn layer_dir(&self, id: &str) -> PathBuf {
        self.dir.join("layers").join(id)
    }
    /// The root folder of a built layer.
    pub fn root_of(&self, id: &str) -> PathBuf {
        self.layer_dir(id).join("root")
    }
    pub fn log_of(&self, id: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{id}.log"))
    }
    fn archives(&self) -> PathBuf {
        self.dir.join("apt").join("archives")
    }
    pub fn is_built(&self, id: &str) -> bool {
        self.layer_dir(id).join("layer.json").is_file()
    }
    pub fn meta(&self, id: &str) -> Option<LayerMeta> {
        crate::state::read_json(&self.layer_dir(id).join("layer.json")).ok().flatten()
    }
    fn lock(&self, ui: &mut dyn BuildUi) -> Result<Lock, RunError> {
        // Host root's alone: layers are mounted by host root, nobody else reads them
        // here (a cache that holds layers from an earlier version is tightened too).
        super::layout::private_dir(&self.dir, self.dir.join("layers").is_dir())
            .map_err(io(format!("creating {}", self.dir.display())))?;
        let path = self.dir.join(".lock");
        Lock::take(&path, || ui.say("waiting for another build or gc to finish …"))
            .map_err(io(format!("locking {}", path.display())))
    }

    /// Every built layer, by id.
    pub fn list(&self) -> Vec<LayerMeta> {
        let Ok(rd) = std::fs::read_dir(self.dir.join("layers")) else { return Vec::new() };
        let mut out: Vec<LayerMeta> = rd
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| !n.contains('.'))
            .filter_map(|n| self.meta(&n))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Build whatever of `layer`'s stack is not cached yet; report reuse. Relative
    /// fetch paths (a tarball next to the spec) are taken from `spec_dir`. With
    /// `user` (the container's folders and state root), record that it uses the
    /// layers, under the same lock, so a `gc` can never fall between the two.
    pub fn ensure(
        &self,
        layer: &Layer,
        spec_dir: &Path,
        user: Option<(&Dirs, &Path)>,
        ui: &mut dyn BuildUi,
    ) -> Result<Ensured, RunError> {
        let st = stack(layer).ok_or_else(|| RunError::Failed(format!("base `{}` has no layers", layer.base)))?;
        let ids = st.ids();
        let _lock = self.lock(ui)?;
        let mut built = Vec::new();
        if self.is_built(&st.base_id) {
            if st.top_id.as_ref().is_some_and(|t| !self.is_built(t)) {
                ui.say(&format!("base {} (debian:{}): reuse", st.base_id, st.base.suite));
            }
        } else {
            self.build(&st.base_id, ui, |c, log, ui| c.build_base(&st, log, ui))?;
            built.push(st.base_id.clone());
        }
        if let Some(top) = &st.top_id {
            if !self.is_built(top) {
                self.build(top, ui, |c, log, ui| c.build_packages(&st, top, layer, spec_dir, log, ui))?;
                built.push(top.clone());
            }
        }
        if let Some((dirs, state_root)) = user {
            self.record_use(dirs, state_root, &ids)?;
        }
        Ok(Ensured { roots: ids.iter().map(|i| self.root_of(i)).collect(), ids, built })
    }

    /// Build layer `id` in its partial folder with `f`, then move it into place; on
    /// failure remove the partial folder.
    fn build(
        &self,
        id: &str,
        ui: &mut dyn BuildUi,
        f: impl FnOnce(&Cache, &Path, &mut dyn BuildUi) -> Result<LayerMeta, BuildError>,
    ) -> Result<(), RunError> {
        let partial = self.dir.join("layers").join(format!("{id}.partial"));
        // Leftovers of an interrupted build (or a layer folder without its layer.json,
        // which never counts as built) would be in the way.
        remove_tree(&partial)?;
        remove_tree(&self.layer_dir(id))?;
        std::fs::create_dir_all(&partial).map_err(io(format!("creating {}", partial.display())))?;
        let log = self.log_of(id);
        std::fs::create_dir_all(self.dir.join("logs")).map_err(io("creating the log folder"))?;
        std::fs::write(&log, format!("# build of layer {id}\n")).map_err(io(format!("writing {}", log.display())))?;
        ui.say(&format!("building layer {id} (log: {})", log.display()));
        let start = Instant::now();
        let result = f(self, &log, ui).and_then(|mut meta| {
            for d in ["work", "merged"] {
                remove_tree(&partial.join(d)).map_err(|e| BuildError::Invalid(e.to_string()))?;
            }
            meta.build_secs = start.elapsed().as_secs_f64();
            meta.size = disk_usage(&partial.join("root"));
            let json = serde_json::to_vec_pretty(&meta).expect("layer meta serializes");
            crate::state::write_atomic(&partial.join("layer.json"), &json)
                .map_err(|e| BuildError::Invalid(e.to_string()))?;
            std::fs::rename(&partial, self.layer_dir(id)).map_err(bio(format!("moving layer {id} into place")))
        });
        match result {
            Ok(()) => {
                let line = format!("layer {id}: built in {:.1} s", start.elapsed().as_secs_f64());
                let _ = build::log_line(&log, &format!("# {line}"));
                ui.say(&line);
                Ok(())
            }
            Err(e) => {
                let _ = build::log_line(&log, &format!("# failed: {e}"));
                // Nothing half-made stays behind.
                remove_tree(&partial)?;
                Err(RunError::Build(e))
            }
        }
    }

    fn step(&self, ui: &mut dyn BuildUi, n: usize, total: usize, what: &str, log: &Path) -> Result<(), BuildError> {
        build::log_line(log, &format!("# step {n}/{total}: {what}"))?;
        ui.begin(n, total, what);
        Ok(())
    }

    fn build_base(&self, st: &LayerStack, log: &Path, ui: &mut dyn BuildUi) -> Result<LayerMeta, BuildError> {
        let partial = self.dir.join("layers").join(format!("{}.partial", st.base_id));
        let root = partial.join("root");
        let t = Instant::now();
        self.step(ui, 1, 1, &format!("debootstrap debian:{} ({})", st.base.suite, st.base.arch), log)?;
        let mut watch = |d: Duration, l: &str| ui.tick(d, l);
        let (b, debs) = (&st.base, self.archives());
        let mut result = build::debootstrap(&b.suite, &b.mirror, &b.arch, &root, &debs, log, &mut watch);
        if let Err(BuildError::Failed { .. }) = &result {
            // Once more from scratch: a download cut off by the mirror is the usual
            // cause, and what was fetched so far stays in the shared cache.
            build::log_line(log, "# debootstrap failed; retrying once from scratch")?;
            remove_tree(&root).map_err(|e| BuildError::Invalid(e.to_string()))?;
            result = build::debootstrap(&b.suite, &b.mirror, &b.arch, &root, &debs, log, &mut watch);
        }
        result?;
        ui.end(t.elapsed().as_secs_f64());
        // The .debs live in the shared cache, not in the layer.
        clear_debs(&root.join("var/cache/apt/archives"));
        // debootstrap lists `<suite> main` alone: in its place, the suite with its
        // updates and security fixes, for every apt run over this base.
        let sources = root.join(APT_SOURCES);
        let dir = sources.parent().expect("the sources file is in a folder");
        std::fs::create_dir_all(dir).map_err(bio(format!("creating {}", dir.display())))?;
        std::fs::write(&sources, apt_sources(&st.base)).map_err(bio(format!("writing {}", sources.display())))?;
        let old = root.join("etc/apt/sources.list");
        if old.exists() {
            std::fs::remove_file(&old).map_err(bio(format!("removing {}", old.display())))?;
        }
        build::log_line(log, &format!("# wrote /{APT_SOURCES}:\n{}", apt_sources(&st.base)))?;
        Ok(LayerMeta {
            id: st.base_id.clone(),
            kind: "base".into(),
            parent: None,
            suite: st.base.suite.clone(),
            mirror: st.base.mirror.clone(),
            security_mirror: st.base.security_mirror.clone(),
            arch: st.base.arch.clone(),
            packages: Vec::new(),
            steps: Vec::new(),
            created_ms: now_ms(),
            build_secs: 0.0,
            size: 0,
        })
    }

    fn build_packages(
        &self,
        st: &LayerStack,
        id: &str,
        layer: &Layer,
        spec_dir: &Path,
        log: &Path,
        ui: &mut dyn BuildUi,
    ) -> Result<LayerMeta, BuildError> {
        let partial = self.dir.join("layers").join(format!("{id}.partial"));
        let lists = self.dir.join("apt").join("lists").join(&st.base_id);
        let archives = self.archives();
        for d in [lists.join("partial"), archives.join("partial")] {
            std::fs::create_dir_all(&d).map_err(bio(format!("creating {}", d.display())))?;
        }
        let fs = LayerFs {
            lower: vec![self.root_of(&st.base_id)],
            upper: partial.join("root"),
            work: partial.join("work"),
            merged: partial.join("merged"),
            binds: vec![
                (archives.clone(), "/var/cache/apt/archives".into()),
                (lists, "/var/lib/apt/lists".into()),
                (PathBuf::from("/etc/resolv.conf"), "/etc/resolv.conf".into()),
            ],
        };
        build::log_line(log, &format!("# base {} (debian:{}): reused", st.base_id, st.base.suite))?;
        // Maintainer scripts must not start daemons in the build.
        let policy = fs.upper.join("usr/sbin/policy-rc.d");
        std::fs::create_dir_all(fs.upper.join("usr/sbin")).map_err(bio("creating usr/sbin in the layer"))?;
        std::fs::write(&policy, "#!/bin/sh\n# container build: no daemons\nexit 101\n")
            .and_then(|_| std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o755)))
            .map_err(bio("writing policy-rc.d"))?;

        let total = 3 + layer.steps.len() + usize::from(!layer.packages.is_empty());
        let mut n = 0;
        let commands = package_commands(layer);
        let net = |c: &LayerCommand| if c.network { StepNet::HostNet } else { StepNet::Offline };
        // One progress step may run several commands (apt's download, then install).
        let run = |c: &Cache, n: &mut usize, what: &str, cmds: &[&LayerCommand], ui: &mut dyn BuildUi| {
            *n += 1;
            c.step(ui, *n, total, what, log)?;
            let t = Instant::now();
            let mut watch = |d: Duration, l: &str| ui.tick(d, l);
            for cmd in cmds {
                build::run_in_layer_net(&fs, &cmd.argv, net(cmd), log, &mut watch)?;
            }
            ui.end(t.elapsed().as_secs_f64());
            Ok::<(), BuildError>(())
        };
        let mut cmds = commands.iter();
        let update = cmds.next().expect("apt-get update comes first");
        run(self, &mut n, "apt-get update", &[update], ui)?;
        let (download, upgrade) = (cmds.next().expect("upgrade's download"), cmds.next().expect("upgrade"));
        run(self, &mut n, "apt-get upgrade", &[download, upgrade], ui)?;
        if !layer.packages.is_empty() {
            let before = deb_files(&archives);
            let (download, install) = (cmds.next().expect("download"), cmds.next().expect("install"));
            let shown = layer.packages.iter().cloned().collect::<Vec<_>>().join(" ");
            run(self, &mut n, &format!("apt-get install {shown}"), &[download, install], ui)?;
            let installed = installed_debs(&self.root_of(&st.base_id), &fs.upper);
            let after = deb_files(&archives);
            let from_cache = installed.iter().filter(|d| before.contains(*d)).count();
            let downloaded = after.difference(&before).count();
            let line = format!(
                "apt: {} packages installed: {from_cache} from the shared cache, {downloaded} downloaded",
                installed.len()
            );
            build::log_line(log, &format!("# {line}"))?;
            ui.say(&line);
        }
        for s in &layer.steps {
            match s {
                BuildStep::Run(_) => {
                    let cmd = cmds.next().expect("a command per build step");
                    run(self, &mut n, &describe_step(s), &[cmd], ui)?
                }
                BuildStep::Fetch(f) => {
                    cmds.next();
                    n += 1;
                    self.step(ui, n, total, &describe_step(s), log)?;
                    let t = Instant::now();
                    let mut watch = |d: Duration, l: &str| ui.tick(d, l);
                    let url = build::resolve_local(&f.url, spec_dir);
                    let file = build::fetch(&url, &f.sha256, &self.dir.join("downloads"), log, &mut watch)?;
                    build::unpack(&fs, &file, &f.dest.0, f.strip, log, &mut watch)?;
                    ui.end(t.elapsed().as_secs_f64());
                }
            }
        }
        n += 1;
        self.step(ui, n, total, "finish the layer", log)?;
        // Build-time leftovers that are not part of the layer.
        for p in ["usr/sbin/policy-rc.d", "var/cache/apt/pkgcache.bin", "var/cache/apt/srcpkgcache.bin"] {
            let f = fs.upper.join(p);
            if f.exists() {
                std::fs::remove_file(&f).map_err(bio(format!("removing {}", f.display())))?;
            }
        }
        ui.end(0.0);
        Ok(LayerMeta {
            id: id.to_string(),
            kind: "packages".into(),
            parent: Some(st.base_id.clone()),
            suite: st.base.suite.clone(),
            mirror: st.base.mirror.clone(),
            security_mirror: st.base.security_mirror.clone(),
            arch: st.base.arch.clone(),
            packages: layer.packages.iter().cloned().collect(),
            steps: layer.steps.iter().map(describe_step).collect(),
            created_ms: now_ms(),
            build_secs: 0.0,
            size: 0,
        })
    }
}

fn remove_tree(p: &Path) -> Result<(), RunError> {
    match std::fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("removing {}", p.display()))(e)),
    }
}

fn clear_debs(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".deb")) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn deb_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten().map(|e| e.file_name().to_string_lossy().to_string()).filter(|n| n.ends_with(".deb")).collect()
        })
        .unwrap_or_default()
}

/// The .deb file names (as apt names them) of the packages the layer installed:
/// those in its dpkg status that the base's status lacks.
fn installed_debs(base: &Path, upper: &Path) -> BTreeSet<String> {
    let read = |root: &Path| -> BTreeSet<String> {
        let text = std::fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap_or_default();
        text.split("\n\n")
            .filter_map(|stanza| {
                let field = |k: &str| stanza.lines().find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()));
                let (p, v, a) = (field("Package:")?, field("Version:")?, field("Architecture:")?);
                Some(format!("{p}_{}_{a}.deb", v.replace(':', "%3a")))
            })
            .collect()
    };
    let old = read(base);
    read(upper).difference(&old).cloned().collect()
}

/// Bytes a folder takes on disk (not following symlinks, hard links counted once).
pub fn disk_usage(p: &Path) -> u64 {
    let mut seen = BTreeSet::new();
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.nlink() > 1 && !m.is_dir() && !seen.insert((m.dev(), m.ino())) {
                continue;
            }
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_debs_are_the_new_status_entries() {
        let dir = tempfile::tempdir().unwrap();
        let (base, upper) = (dir.path().join("b"), dir.path().join("u"));
        for (root, text) in [
            (&base, "Package: a\nVersion: 1\nArchitecture: amd64\n\n"),
            (
                &upper,
                "Package: a\nVersion: 1\nArchitecture: amd64\n\nPackage: b\nStatus: x\nVersion: 1:2.0-1\nArchitecture: all\n",
            ),
        ] {
            std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
            std::fs::write(root.join("var/lib/dpkg/status"), text).unwrap();
        }
        assert_eq!(installed_debs(&base, &upper).into_iter().collect::<Vec<_>>(), ["b_1%3a2.0-1_all.deb"]);
    }
}
