//! `validate` and `plan`.

use crate::diag::SpecErrors;
use crate::exec::beneath::SpecFolder;
use crate::plan::{self, render, Env};
use crate::runtime::layout::StateRoot;
use crate::spec;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub(crate) fn report(e: &SpecErrors) {
    errln!("{:?}", e.report());
}

/// The spec used when no file is given: a `host`-base example that needs no download.
pub const EMBEDDED_NAME: &str = "examples/hello-host.toml (embedded)";
pub const EMBEDDED: &str = include_str!("../../examples/hello-host.toml");

/// Why a spec did not load or compile: its problems, or an error of the host (the
/// state root's address pool cannot be read).
pub(crate) enum Failure {
    Spec(SpecErrors),
    Host(String),
}

static HOST_CONFIG_PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
static HOST_CONFIG: std::sync::OnceLock<Result<crate::spec::host::LoadedHost, SpecErrors>> = std::sync::OnceLock::new();

/// Where the host configuration is read from (`--config`, `CONTAINER_CONFIG`).
pub fn set_host_config(path: &Path) {
    let _ = HOST_CONFIG_PATH.set(path.to_path_buf());
}

/// The host configuration, read once: the built-in defaults when the default file
/// does not exist; a file named with `--config` must exist. Its problems are located.
pub(crate) fn host_config() -> Result<&'static crate::spec::host::LoadedHost, SpecErrors> {
    use crate::spec::host;
    HOST_CONFIG
        .get_or_init(|| {
            let path = HOST_CONFIG_PATH.get().cloned().unwrap_or_else(|| host::DEFAULT_PATH.into());
            let file = path.display().to_string();
            match crate::exec::beneath::read_named(&path, host::MAX_BYTES) {
                Ok(bytes) => host::parse(&file, &bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && path == Path::new(host::DEFAULT_PATH) => {
                    Ok(host::LoadedHost::default())
                }
                Err(e) => {
                    let mut errs = SpecErrors::new(&file, "");
                    errs.push(
                        crate::diag::Problem::new(format!("cannot read the host configuration {file}: {e}"))
                            .help("name a readable TOML file with --config (or CONTAINER_CONFIG), or leave it out for the defaults"),
                    );
                    Err(errs)
                }
            }
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The host configuration's values this plan took (the spec left them out): (key,
/// value, "FILE:LINE").
fn host_values(
    spec: &spec::Spec,
    plan: &plan::Plan,
    host: &crate::spec::host::LoadedHost,
) -> Vec<(String, String, String)> {
    let c = &host.config;
    let debian = plan.layer.base.0.starts_with("debian:");
    let own_net = plan.network.mode != crate::spec::types::NetMode::Host;
    let auto4 = spec.network.ipv4.as_ref().is_some_and(|a| a.0.is_none());
    let auto6 = spec.network.ipv6.as_ref().is_some_and(|a| a.0.is_none());
    let used: [(&str, Option<String>); 5] = [
        ("network.ipv4_pool", c.network.ipv4_pool.as_ref().filter(|_| auto4).map(|p| format!("\"{p}\""))),
        ("network.ipv6_pool", c.network.ipv6_pool.as_ref().filter(|_| auto6).map(|p| format!("\"{p}\""))),
        (
            "network.nameservers",
            (own_net && spec.network.nameservers.is_empty() && !c.network.nameservers.is_empty())
                .then(|| format!("{:?}", c.network.nameservers.iter().map(|a| a.to_string()).collect::<Vec<_>>())),
        ),
        (
            "debian.mirror",
            c.debian.mirror.as_ref().filter(|_| debian && spec.mirror.is_none()).map(|m| format!("\"{m}\"")),
        ),
        (
            "debian.security_mirror",
            c.debian
                .security_mirror
                .as_ref()
                .filter(|_| debian && spec.security_mirror.is_none())
                .map(|m| format!("\"{m}\"")),
        ),
    ];
    used.into_iter().filter_map(|(k, v)| Some((k.to_string(), v?, host.origin(k)?))).collect()
}

/// Load and compile a spec (or the embedded example) against the state under `root`,
/// printing nothing.
fn try_load_and_compile(root: &Path, file: Option<&Path>) -> Result<(spec::Loaded, plan::Plan, StateRoot), Failure> {
    let loaded = match file {
        Some(f) => spec::load_file(f, crate::exec::beneath::read_named),
        None => spec::load_embedded(EMBEDDED_NAME, EMBEDDED),
    }
    .map_err(Failure::Spec)?;
    let state = StateRoot::new(root);
    let host = host_config().map_err(Failure::Spec)?;
    let pool = crate::runtime::address_pool(root).map_err(|e| Failure::Host(e.to_string()))?;
    let reader = SpecFolder(loaded.dir.clone());
    let plan =
        plan::compile(&loaded, &Env { pool: &pool, reader: &reader, host: &host.config }).map_err(Failure::Spec)?;
    Ok((loaded, plan, state))
}

/// Load and compile a spec (or the embedded example) against the state under `root`;
/// problems are reported on stderr.
pub fn load_and_compile(root: &Path, file: Option<&Path>) -> Result<(spec::Loaded, plan::Plan, StateRoot), ExitCode> {
    try_load_and_compile(root, file).map_err(|f| {
        match f {
            Failure::Spec(e) => report(&e),
            Failure::Host(e) => errln!("error: {e}"),
        }
        ExitCode::FAILURE
    })
}

/// How `validate` prints problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ProblemFormat {
    /// Snippets with the source and help, on stderr.
    #[default]
    Human,
    /// One JSON document on stdout: `{"ok": BOOL, "problems": [{"file", "line",
    /// "column", "message", "help"}]}`.
    Json,
    /// One line per problem on stdout: `FILE:LINE:COL: error: MESSAGE`.
    Short,
}

/// The problems of one file in the machine forms: a host error (no place in the
/// file) is put at its line 1, column 1.
fn placed(file: &Path, f: &Failure) -> Vec<crate::diag::PlacedProblem> {
    match f {
        Failure::Spec(e) => e.located(),
        Failure::Host(e) => vec![crate::diag::PlacedProblem {
            file: file.display().to_string(),
            line: 1,
            column: 1,
            message: e.clone(),
            help: None,
        }],
    }
}

/// `FILE:LINE:COL: error: MESSAGE` on one line (a message's own line breaks become
/// spaces, so every line is one problem).
pub(crate) fn short_line(p: &crate::diag::PlacedProblem) -> String {
    let message = p.message.split_whitespace().collect::<Vec<_>>().join(" ");
    format!("{}:{}:{}: error: {message}", p.file, p.line, p.column)
}

/// The JSON document of `validate --format json` (keys documented in the README).
pub(crate) fn problems_json(problems: &[crate::diag::PlacedProblem]) -> serde_json::Value {
    serde_json::json!({ "ok": problems.is_empty(), "problems": problems })
}

pub fn validate(root: &Path, files: &[PathBuf], format: ProblemFormat) -> ExitCode {
    let mut ok = true;
    let mut problems = Vec::new();
    for f in files {
        // Validation compiles too (modules, hooks) against the state under `root`
        // (read only), so an address another container holds is caught here as well.
        if let Err(failure) = try_load_and_compile(root, Some(f)) {
            ok = false;
            match format {
                ProblemFormat::Human => match failure {
                    Failure::Spec(e) => report(&e),
                    Failure::Host(e) => errln!("error: {e}"),
                },
                ProblemFormat::Short => {
                    for p in placed(f, &failure) {
                        outln!("{}", short_line(&p));
                    }
                }
                ProblemFormat::Json => problems.extend(placed(f, &failure)),
            }
        }
    }
    if format == ProblemFormat::Json {
        outln!("{}", serde_json::to_string_pretty(&problems_json(&problems)).unwrap_or_default());
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub fn plan(root: &Path, cache: &Path, file: Option<&Path>, json: bool) -> ExitCode {
    if file.is_none() {
        errln!("(no spec given: planning the embedded example {EMBEDDED_NAME})");
    }
    let (loaded, plan, state) = match load_and_compile(root, file) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let from_host = host_config().map(|h| host_values(&loaded.spec, &plan, h)).unwrap_or_default();
    let applied = match crate::runtime::applied(root, &plan.name) {
        Ok(a) => a,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A crashed container's leftovers go first (its rules, veth, cgroups).
    if applied.is_some() {
        if let Err(e) = crate::runtime::reap_crashed(root, &plan.name) {
            eprintln!("warning: {}: cleaning up after its crash: {e}", plan.name);
        }
    }
    // Addresses and prefixes that would take over another container's or a host
    // route are refused here as `apply` refuses them.
    if let Err(e) = crate::runtime::check_network_if_readable(root, &plan) {
        errln!("error: {e}");
        return ExitCode::FAILURE;
    }
    // Secrets `container secret regenerate` asked a new value for (read only).
    let regenerate = match crate::runtime::layout::read_regenerate(&state.container(&plan.name)) {
        Ok(r) => r,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A secret `apply` would refuse (missing, empty, not a regular file) is said here.
    if let Err(e) =
        crate::runtime::prepare::check_secrets(&plan, applied.as_ref(), &state.container(&plan.name), &regenerate)
    {
        errln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let mut changes = plan::secrets::with_regenerations(plan::diff(applied.as_ref(), &plan), &plan, &regenerate);
    // What runs, against what was recorded: drift shows as changes too.
    if let Some(recorded) = &applied {
        changes.drift = crate::runtime::observe::drift(root, recorded);
    }
    let layer = super::build::layer_line(cache, &plan);
    let builds = super::build::layer_builds(cache, &plan);
    let userns = match crate::runtime::userns_view(root, &plan) {
        Ok(u) => u,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let migrate: Vec<String> = userns
        .migrate
        .iter()
        .map(|v| match plan.host_root {
            false => format!("~ volume {v}: shift its host ids into the container's uid range (once, while stopped)"),
            true => format!("~ volume {v}: shift its ids back to host ids, user namespace off (once, while stopped)"),
        })
        .collect();
    // The restart policy is `start --wait`'s alone: `apply` records a new one.
    let policy = applied.as_ref().filter(|a| a.restart != plan.restart).map(|a| {
        let w = crate::runtime::restart_word;
        (w(a.restart), w(plan.restart))
    });
    let text = if json {
        let mut v: serde_json::Value =
            serde_json::from_str(&render::json(&changes, &plan)).expect("render::json is JSON");
        if let Some(l) = &layer {
            v["layer_cache"] = serde_json::Value::String(l.clone());
        }
        if !builds.is_empty() {
            v["layer_build"] = serde_json::Value::Array(builds.clone());
        }
        let mut u = userns.json.clone();
        u["migrate_volumes"] = serde_json::json!(userns.migrate);
        v["user_namespace"] = u;
        if let Some((from, to)) = policy {
            v["restart_policy"] = serde_json::json!({"from": from, "to": to});
        }
        if !from_host.is_empty() {
            v["host_config"] = serde_json::json!(from_host
                .iter()
                .map(|(k, val, at)| serde_json::json!({"key": k, "value": val, "from": at}))
                .collect::<Vec<_>>());
        }
        format!("{}\n", serde_json::to_string_pretty(&v).expect("serializes"))
    } else {
        let mut t = render::human(&changes, true);
        if let Some(l) = &layer {
            t.push_str(l);
            t.push('\n');
        }
        for line in super::build::layer_build_lines(&builds) {
            t.push_str(&line);
            t.push('\n');
        }
        t.push_str(&userns.line);
        t.push('\n');
        for m in &migrate {
            t.push_str(m);
            t.push('\n');
        }
        if let Some((from, to)) = policy {
            t.push_str(&format!("~ restart policy: {from} → {to} (recorded; nothing restarts)\n"));
        }
        for (k, val, at) in &from_host {
            t.push_str(&format!("  host config: {k} = {val} (from {at})\n"));
        }
        t
    };
    let mut out = anstream::stdout();
    if out.write_all(text.as_bytes()).and_then(|_| out.flush()).is_err() {
        return ExitCode::FAILURE;
    }
    if changes.is_empty() && migrate.is_empty() && policy.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}
