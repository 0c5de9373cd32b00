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

/// Load and compile a spec (or the embedded example) against the state under `root`.
pub fn load_and_compile(root: &Path, file: Option<&Path>) -> Result<(spec::Loaded, plan::Plan, StateRoot), ExitCode> {
    let loaded = match file {
        Some(f) => spec::load_file(f, crate::exec::beneath::read_named),
        None => spec::load_embedded(EMBEDDED_NAME, EMBEDDED),
    }
    .map_err(|e| {
        report(&e);
        ExitCode::FAILURE
    })?;
    let state = StateRoot::new(root);
    let pool = crate::runtime::address_pool(root).map_err(|e| {
        errln!("error: {e}");
        ExitCode::FAILURE
    })?;
    let reader = SpecFolder(loaded.dir.clone());
    let plan = plan::compile(&loaded, &Env { pool: &pool, reader: &reader }).map_err(|e| {
        report(&e);
        ExitCode::FAILURE
    })?;
    Ok((loaded, plan, state))
}

pub fn validate(root: &Path, files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for f in files {
        // Validation compiles too (modules, hooks) against the state under `root`
        // (read only), so an address another container holds is caught here as well.
        if load_and_compile(root, Some(f)).is_err() {
            ok = false;
        }
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
    let (_, plan, state) = match load_and_compile(root, file) {
        Ok(x) => x,
        Err(code) => return code,
    };
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
