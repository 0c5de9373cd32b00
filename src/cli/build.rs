//! `build`, `images`, `gc`, and the build progress display `apply` shares.

use super::plan::load_and_compile;
use crate::exec::build::debootstrap_first_stage_argv;
use crate::plan::layer::{base_commands, package_commands, stack, APT_SOURCES};
use crate::plan::Plan;
use crate::runtime::layers::{BuildUi, Cache, Ensured, LayerMeta};
use crate::runtime::RunError;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// Progress as a bar on a terminal, plain lines otherwise (both on stderr).
pub struct Progress {
    tty: bool,
    current: String,
    step: (usize, usize),
    last_plain: Duration,
}

impl Progress {
    pub fn new() -> Self {
        let tty = std::io::stderr().is_terminal() && std::env::var_os("TERM").is_some_and(|t| t != "dumb");
        Progress { tty, current: String::new(), step: (0, 0), last_plain: Duration::ZERO }
    }
    fn clear(&self) {
        if self.tty {
            err!("\r\x1b[2K");
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

fn width() -> usize {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).unwrap_or(100).clamp(40, 300)
}

impl BuildUi for Progress {
    fn say(&mut self, line: &str) {
        self.clear();
        errln!("{line}");
    }
    fn begin(&mut self, n: usize, total: usize, what: &str) {
        self.current = what.to_string();
        self.step = (n, total);
        self.last_plain = Duration::ZERO;
        if !self.tty {
            errln!("build [{n}/{total}] {what}");
        }
    }
    fn tick(&mut self, elapsed: Duration, last: &str) {
        let (n, total) = self.step;
        if !self.tty {
            // A sign of life every half minute on a log or CI console.
            if elapsed >= self.last_plain + Duration::from_secs(30) {
                if self.last_plain > Duration::ZERO {
                    errln!("build [{n}/{total}] {} … {} s", self.current, elapsed.as_secs());
                }
                self.last_plain = elapsed;
            }
            return;
        }
        const BAR: usize = 20;
        let done = ((n.saturating_sub(1)) * BAR) / total.max(1);
        let spin = ["|", "/", "-", "\\"][(elapsed.as_millis() / 250 % 4) as usize];
        let bar: String = (0..BAR)
            .map(|i| {
                if i < done {
                    "#"
                } else if i == done {
                    spin
                } else {
                    "."
                }
            })
            .collect();
        let secs = elapsed.as_secs();
        let head = format!("[{bar}] {n}/{total} {} {}:{:02} ", self.current, secs / 60, secs % 60);
        let room = width().saturating_sub(head.chars().count() + 1);
        let tail: String = last.chars().take(room).collect();
        if std::env::var_os("NO_COLOR").is_some() {
            err!("\r\x1b[2K{head}{tail}");
        } else {
            err!("\r\x1b[2K{head}\x1b[2m{tail}\x1b[0m");
        }
        let _ = std::io::stderr().flush();
    }
    fn end(&mut self, secs: f64) {
        let (n, total) = self.step;
        self.clear();
        if self.tty {
            errln!("[{n}/{total}] {} ({secs:.1} s)", self.current);
        } else if secs >= 1.0 {
            errln!("build [{n}/{total}] done in {secs:.1} s");
        }
    }
}

/// Build (or reuse) the layers of `plan` (its spec in `spec_dir`), and with `user`
/// record that this container uses them; `None` for a `host` base.
pub fn ensure(
    cache: &Path,
    plan: &Plan,
    spec_dir: &Path,
    user: Option<(&crate::runtime::Dirs, &Path)>,
) -> Result<Option<Ensured>, RunError> {
    if stack(&plan.layer).is_none() {
        return Ok(None);
    }
    Cache::new(cache).ensure(&plan.layer, spec_dir, user, &mut Progress::new()).map(Some)
}

/// What `plan` prints about the layers: reuse or (re)build.
pub fn layer_line(cache: &Path, plan: &Plan) -> Option<String> {
    let st = stack(&plan.layer)?;
    let cache = Cache::new(cache);
    let missing: Vec<String> = st.ids().into_iter().filter(|i| !cache.is_built(i)).collect();
    Some(if missing.is_empty() {
        format!("layer: reuse {}", st.ids().join(" on "))
    } else {
        format!("layer: rebuild {} (not in the cache)", missing.join(", "))
    })
}

/// What `plan` shows of the builds of the layers not in the cache: per command, the
/// layer, where it runs, its argv and its network (cache paths shown as `<cache>`).
pub fn layer_builds(cache: &Path, plan: &Plan) -> Vec<serde_json::Value> {
    let Some(st) = stack(&plan.layer) else { return Vec::new() };
    let cache = Cache::new(cache);
    let mut out = Vec::new();
    let mut push = |layer: &str, runs: &str, argv: Vec<String>, network: bool| {
        out.push(serde_json::json!({"layer": layer, "runs": runs, "argv": argv, "network": network}));
    };
    if !cache.is_built(&st.base_id) {
        let (b, id) = (&st.base, &st.base_id);
        let target = format!("<cache>/layers/{id}.partial/root");
        let argv = debootstrap_first_stage_argv(&b.suite, &b.mirror, &b.arch, &target, "<cache>/apt/archives");
        push(id, "host", argv, true);
        for c in base_commands() {
            push(id, "sandbox", c.argv, c.network);
        }
        // In place of debootstrap's `<suite> main`: the suite, its updates and its
        // security fixes (`apt_sources`), as mirror and suites per entry.
        let s = &b.suite;
        let sources = vec![
            "write".to_string(),
            format!("/{APT_SOURCES}"),
            format!("{} {s} {s}-updates", b.mirror),
            format!("{} {s}-security", b.security_mirror),
        ];
        push(id, "host", sources, false);
    }
    if let Some(top) = st.top_id.as_ref().filter(|t| !cache.is_built(t)) {
        for c in package_commands(&plan.layer) {
            let runs = if c.argv[0] == "fetch" { "host" } else { "sandbox" };
            push(top, runs, c.argv, c.network);
        }
    }
    out
}

/// `w` as a POSIX shell word: as it is when it needs no quoting, else single-quoted
/// (the placeholder `<cache>` is left as it is).
fn shell_word(w: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./:=@%+,-".contains(c);
    if !w.is_empty() && w.replace("<cache>", "").chars().all(plain) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// `plan`'s lines for [`layer_builds`].
pub fn layer_build_lines(builds: &[serde_json::Value]) -> Vec<String> {
    builds
        .iter()
        .map(|b| {
            let argv: Vec<String> =
                b["argv"].as_array().into_iter().flatten().filter_map(|a| a.as_str()).map(shell_word).collect();
            let net = if b["network"] == true { "host network" } else { "no network" };
            let runs = if b["runs"] == "host" { "on the host" } else { "sandboxed" };
            format!("  build {}: {} ({runs}, {net})", b["layer"].as_str().unwrap_or(""), argv.join(" "))
        })
        .collect()
}

pub fn build(root: &Path, cache: &Path, file: &Path) -> ExitCode {
    let (loaded, plan, _) = match load_and_compile(root, Some(file)) {
        Ok(x) => x,
        Err(code) => return code,
    };
    if stack(&plan.layer).is_none() {
        outln!("{}: base `host` has nothing to build", plan.name);
        return ExitCode::SUCCESS;
    }
    match ensure(cache, &plan, &loaded.dir, None) {
        Ok(Some(e)) => {
            let verb = if e.built.is_empty() { "reused" } else { "built" };
            outln!("{}: layers {} ({verb})", plan.name, e.ids.join(" on "));
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("error: build {}: {e}", plan.name);
            ExitCode::FAILURE
        }
    }
}

fn human_size(b: u64) -> String {
    let mib = b as f64 / (1024.0 * 1024.0);
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

fn describe(l: &LayerMeta) -> String {
    if l.kind == "base" {
        return format!("debian:{} {} (minbase)", l.suite, l.arch);
    }
    let mut s = if l.packages.len() > 6 {
        format!("{} (+{} more)", l.packages[..6].join(" "), l.packages.len() - 6)
    } else {
        l.packages.join(" ")
    };
    if !l.steps.is_empty() {
        s.push_str(&format!(", {} build steps", l.steps.len()));
    }
    s
}

pub fn images(cache: &Path, json: bool) -> ExitCode {
    let c = Cache::new(cache);
    let layers = c.list();
    let users: Vec<Vec<String>> = layers
        .iter()
        .map(|l| {
            let mut u: Vec<String> = c.users(&l.id).into_iter().map(|(root, name)| user_name(&root, &name)).collect();
            // A base is used by whatever uses the package layers on it.
            for p in layers.iter().filter(|p| p.parent.as_deref() == Some(&l.id)) {
                u.extend(c.users(&p.id).into_iter().map(|(root, name)| user_name(&root, &name)));
            }
            u.sort();
            u.dedup();
            u
        })
        .collect();
    if json {
        let rows: Vec<serde_json::Value> = layers
            .iter()
            .zip(&users)
            .map(|(l, u)| {
                let mut v = serde_json::to_value(l).expect("meta serializes");
                v["used_by"] = serde_json::json!(u);
                v
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&rows).expect("serializes"));
        return ExitCode::SUCCESS;
    }
    if layers.is_empty() {
        outln!("No layers in {}.", cache.display());
        return ExitCode::SUCCESS;
    }
    outln!("{:<21} {:<9} {:>10}  {:<24} CONTENT", "LAYER", "KIND", "SIZE", "USED BY");
    for (l, u) in layers.iter().zip(&users) {
        let used = if u.is_empty() { "-".to_string() } else { u.join(",") };
        outln!("{:<21} {:<9} {:>10}  {:<24} {}", l.id, l.kind, human_size(l.size), used, describe(l));
    }
    let total: u64 = layers.iter().map(|l| l.size).sum();
    outln!("{} layers, {} in {}", layers.len(), human_size(total), cache.display());
    ExitCode::SUCCESS
}

/// A container as `images` names it: just the name under the default state root.
fn user_name(root: &Path, name: &str) -> String {
    if root == Path::new(crate::runtime::layout::DEFAULT_ROOT) {
        name.to_string()
    } else {
        format!("{name}@{}", root.display())
    }
}

pub fn gc(cache: &Path, dry_run: bool) -> ExitCode {
    match Cache::new(cache).gc(dry_run, &mut Progress::new()) {
        Ok(gone) => {
            let verb = if dry_run { "would remove" } else { "removed" };
            for l in &gone {
                outln!("{verb} {} ({}, {})", l.id, describe(l), human_size(l.size));
            }
            let total: u64 = gone.iter().map(|l| l.size).sum();
            outln!("{verb} {} unused layers, {}", gone.len(), human_size(total));
            ExitCode::SUCCESS
        }
        Err(e) => {
            errln!("error: gc: {e}");
            ExitCode::FAILURE
        }
    }
}
