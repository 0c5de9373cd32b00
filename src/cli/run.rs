//! `apply` and the lifecycle commands: list, status, start, stop, restart, exec,
//! shell, logs, destroy.

use super::plan::{report, EMBEDDED, EMBEDDED_NAME};
use crate::exec::beneath::Beneath;
use crate::exec::beneath::SpecFolder;
use crate::exec::supervisor::{self, ControlRequest, ServiceState, Status};
use crate::plan::{self, render, Env, Plan};
use crate::runtime::{self, layout, Applied, Dirs, RunError};
use crate::spec;
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn fail(e: impl std::fmt::Display) -> ExitCode {
    errln!("error: {e}");
    ExitCode::FAILURE
}

fn say(line: &str) {
    errln!("{line}");
}

/// What a command that changed the host says at its end (or before it starts): a
/// write error (EPIPE, a closed terminal) is ignored, so the outcome, not the
/// output, decides the exit code, and nothing stops halfway.
fn tell(text: &str) -> ExitCode {
    let mut o = anstream::stdout();
    let _ = o.write_all(text.as_bytes()).and_then(|_| o.flush());
    ExitCode::SUCCESS
}

fn out(text: &str) -> ExitCode {
    let mut o = anstream::stdout();
    if o.write_all(text.as_bytes()).and_then(|_| o.flush()).is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

pub fn apply(root: &Path, cache: &Path, file: Option<&Path>, dry_run: bool) -> ExitCode {
    if file.is_none() {
        say(&format!("(no spec given: applying the embedded example {EMBEDDED_NAME})"));
    }
    let loaded = match file {
        Some(f) => spec::load_file(f, crate::exec::beneath::read_named),
        None => spec::load_embedded(EMBEDDED_NAME, EMBEDDED),
    };
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            report(&e);
            return ExitCode::FAILURE;
        }
    };
    let host = match super::plan::host_config() {
        Ok(h) => h,
        Err(e) => {
            report(&e);
            return ExitCode::FAILURE;
        }
    };
    let name = loaded.spec.name.0.clone();
    let started = Instant::now();
    if !dry_run && runtime::names(root).contains(&name) {
        // A crashed container's leftovers go first (the apply cleans up too; this
        // also records how its PID 1 ended).
        if let Err(e) = runtime::reap_crashed(root, &name) {
            say(&format!("warning: {name}: cleaning up after its crash: {e}"));
        }
    }
    // The container's lock first, then the pool's for compile + record: two applies
    // of different containers never pick the same "auto" address.
    let _lock = match (!dry_run).then(|| runtime::lock(root, &name, &mut say)).transpose() {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let dirs = Dirs::new(root, &name);
    if !dry_run {
        // Build the root before anything is recorded (a failed build changes nothing),
        // and outside the pool lock (a build takes minutes; the layers do not depend
        // on addresses). The plan is compiled again below, under the lock.
        let pool = match runtime::address_pool(root) {
            Ok(p) => p,
            Err(e) => return fail(e),
        };
        let reader = SpecFolder(loaded.dir.clone());
        match plan::compile(&loaded, &Env { pool: &pool, reader: &reader, host: &host.config }) {
            Ok(p) => {
                if let Err(e) = super::build::ensure(cache, &p, &loaded.dir, None) {
                    return fail(format!("apply {name}: {e}"));
                }
            }
            Err(e) => {
                report(&e);
                return ExitCode::FAILURE;
            }
        }
    }
    let plan = {
        let _pool = match (!dry_run).then(|| runtime::lock_shared(root, "pool")).transpose() {
            Ok(l) => l,
            Err(e) => return fail(e),
        };
        // An "auto" address another root's apply took meanwhile (between our compile
        // and our record: the roots' pool locks are their own) is refused by the check
        // or the host-wide record; compiled again, "auto" skips it. A fixed address
        // compiles to the same plan and is refused for good.
        let mut last: Option<(Option<String>, Option<String>)> = None;
        let mut tries = 0;
        loop {
            tries += 1;
            let pool = match runtime::address_pool(root) {
                Ok(p) => p,
                Err(e) => return fail(e),
            };
            let reader = SpecFolder(loaded.dir.clone());
            let plan = match plan::compile(&loaded, &Env { pool: &pool, reader: &reader, host: &host.config }) {
                Ok(p) => p,
                Err(e) => {
                    report(&e);
                    return ExitCode::FAILURE;
                }
            };
            if dry_run {
                break plan;
            }
            // Refuse what cannot run before anything is recorded.
            if last.is_none() {
                let layers = super::build::ensure(cache, &plan, &loaded.dir, Some((&dirs, root)));
                if let Err(e) = layers.and_then(|_| runtime::prepare::rootfs(&plan, &dirs)) {
                    return fail(format!("apply {name}: {e}"));
                }
            }
            let addrs =
                (plan.network.ipv4_addr().map(|a| a.to_string()), plan.network.ipv6_addr().map(|a| a.to_string()));
            let again = plan.network.auto && last.as_ref() != Some(&addrs) && tries < 8;
            last = Some(addrs);
            match runtime::check_network(root, &plan) {
                Err(_) if again => continue,
                Err(e) => return fail(format!("apply {name}: {e}")),
                Ok(()) => {}
            }
            match runtime::record_addresses(root, &plan) {
                Err(_) if again => continue,
                Err(e) => return fail(e),
                Ok(()) => break plan,
            }
        }
    };
    let old = match runtime::applied(root, &name) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    // The runtime decides (changes, drift, actions); this only prints.
    let decision = match runtime::decide(root, &plan) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let changes = &decision.changes;
    if dry_run {
        return out(&render::human(changes, true));
    }
    let running = layout::running(&dirs).is_some();
    if !changes.is_empty() {
        // Unread output (`apply | head -c1`) does not stop the apply.
        tell(&render::human(changes, true));
    }
    match runtime::apply(root, &plan, &decision, &mut say) {
        Ok(Applied::Unchanged) => {
            tell(&format!("No changes. {name} is running the spec already.\n"));
            ExitCode::SUCCESS
        }
        Ok(Applied::Started { recreated, status }) => {
            let verb = if recreated {
                "recreated"
            } else if old.is_some() && !running {
                "started"
            } else {
                "created"
            };
            finish(&plan, &status, &format!("{name} {verb}"), started)
        }
        Ok(Applied::Updated { reloaded, restarted, network, repaired, status }) => {
            let mut what = Vec::new();
            if !reloaded.is_empty() {
                what.push(format!("reloaded {}", reloaded.join(", ")));
            }
            if !restarted.is_empty() {
                what.push(format!("restarted {}", restarted.join(", ")));
            }
            if network {
                what.push("network reconfigured".into());
            }
            if !repaired.is_empty() {
                what.push(format!("repaired: {}", repaired.join(", ")));
            }
            if what.is_empty() {
                what.push("updated in place".into());
            }
            finish(&plan, &status, &format!("{name}: {}", what.join("; ")), started)
        }
        Err(e) => fail(format!("apply {name}: {e}")),
    }
}

/// Final report of an apply/start: service states, failures, how to reach it.
fn finish(plan: &Plan, status: &Status, headline: &str, started: Instant) -> ExitCode {
    let mut text = format!("{headline} in {:.2} s\n", started.elapsed().as_secs_f64());
    text.push_str(&service_table(status));
    let failures = runtime::failures(status);
    if !failures.is_empty() {
        tell(&text);
        for f in &failures {
            errln!("error: {f}");
        }
        errln!("(logs: container logs {})", plan.name);
        return ExitCode::FAILURE;
    }
    text.push_str(&reach(plan));
    tell(&text)
}

fn service_table(st: &Status) -> String {
    let mut s = String::new();
    for (n, svc) in &st.services {
        let pid = svc.pid.map(|p| format!("pid {p}")).unwrap_or_default();
        s.push_str(&format!("  {n:<16} {:<10} {pid}\n", state_word(svc)));
    }
    s
}

/// A running service without a `ready` probe is only known to have started.
fn state_word(s: &supervisor::ServiceStatus) -> String {
    if s.state == ServiceState::Ready && !s.probed {
        return "started".into();
    }
    serde_json::to_value(s.state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// How to reach the container's listening ports: on its addresses (not the ports
/// bound to its loopback, which are said to be inside only) and through the host
/// ports it publishes.
fn reach(plan: &Plan) -> String {
    let hosts: Vec<String> = match plan.network.mode {
        crate::spec::types::NetMode::Host => vec!["127.0.0.1".into()],
        crate::spec::types::NetMode::None => Vec::new(),
        crate::spec::types::NetMode::Routed => plan
            .network
            .ipv4_addr()
            .map(|a| a.to_string())
            .into_iter()
            .chain(plan.network.ipv6_addr().map(|a| format!("[{a}]")))
            .collect(),
    };
    let web = |port: &str| matches!(port, "80" | "8080" | "8000");
    let mut s = String::new();
    let mut tried = false;
    for (port, owner) in &plan.ports {
        let Some(("tcp", num)) = port.split_once('/') else { continue };
        if plan.loopback_ports.contains(port) {
            s.push_str(&format!("  {owner} listens on tcp/{num} inside the container only (its loopback)\n"));
            continue;
        }
        if hosts.is_empty() {
            continue;
        }
        let urls: Vec<String> = hosts.iter().map(|h| format!("{h}:{num}")).collect();
        s.push_str(&format!("  {owner} listens on tcp/{num}: {}\n", urls.join("  ")));
        if web(num) && !tried {
            s.push_str(&format!("  try: curl http://{}/\n", urls[0]));
            tried = true;
        }
    }
    for p in &plan.network.publish {
        let r = &p.0;
        let on = match r.host_ip {
            Some(std::net::IpAddr::V6(a)) => format!("[{a}]:{}", r.host_port),
            Some(a) => format!("{a}:{}", r.host_port),
            None => format!("any host address, port {}", r.host_port),
        };
        let proto = r.proto.to_string();
        s.push_str(&format!("  published: {on} → {proto}/{}\n", r.container_port));
        if proto == "tcp" && web(&r.container_port.to_string()) && !tried {
            let ip = r.host_ip.map_or("127.0.0.1".to_string(), |a| match a {
                std::net::IpAddr::V6(a) => format!("[{a}]"),
                a => a.to_string(),
            });
            s.push_str(&format!("  try: curl http://{ip}:{}/\n", r.host_port));
            tried = true;
        }
    }
    if s.is_empty() && !hosts.is_empty() {
        s = format!("  address: {}\n", hosts.join(" "));
    }
    s
}

/// One container's row for `list` and the head of `status`.
///
/// `state` is one word: `running`, `failed` (PID 1 runs, a service or init task
/// failed), `stopped` (by the user, or never started) or `crashed` (PID 1 ended
/// without a `stop`; `exit` tells how); `state_text` says the same for people, with
/// how and when PID 1 ended and whether an apply was interrupted (`pending.json`).
fn summary(root: &Path, name: &str) -> serde_json::Value {
    // A crashed container's leftovers go first (its rules, veth, cgroups).
    if let Err(e) = runtime::reap_crashed(root, name) {
        say(&format!("warning: {name}: cleaning up after its crash: {e}"));
    }
    let dirs = Dirs::new(root, name);
    let run_state = runtime::run_state(root, name);
    let info = match &run_state {
        runtime::RunState::Running(i) => Some(*i),
        _ => None,
    };
    // A container whose first apply failed has only the pending plan.
    let plan = runtime::applied(root, name).ok().flatten().or_else(|| runtime::pending(root, name).ok().flatten());
    let pending = dirs.pending().exists();
    // status.json is the container's to replace: a refused one (a symlink, a FIFO, too
    // large) is said and left out; a missing one (PID 1 just started) is not.
    // PID 1 is asked first: status.json may be stale when its disk is full or
    // read-only (the reply counts those failed writes).
    let live = info.and_then(|i| supervisor::control(&dirs.run(), i.pid, &ControlRequest::Status).ok());
    let live = live.and_then(|r| r.status);
    let status = info.and_then(|_| match live.map(Ok).unwrap_or_else(|| supervisor::read_status(&dirs.run())) {
        Ok(st) => Some(st),
        Err(supervisor::SupervisorError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            say(&format!("warning: {name}: {e}"));
            None
        }
    });
    let (ready, total) = status
        .as_ref()
        .map(|s| (s.services.values().filter(|x| x.state == ServiceState::Ready).count(), s.services.len()))
        .unwrap_or((0, plan.as_ref().map(|p| p.services.len()).unwrap_or(0)));
    let failed: Vec<String> = status.as_ref().map(runtime::failures).unwrap_or_default();
    let exit = match &run_state {
        runtime::RunState::Crashed(rec) => rec.clone(),
        _ => None,
    };
    let (state, mut text) = match &run_state {
        runtime::RunState::Running(_) if failed.is_empty() => ("running", "running".to_string()),
        runtime::RunState::Running(_) => ("failed", format!("running, {} failed", failed.len())),
        runtime::RunState::Stopped => ("stopped", "stopped".to_string()),
        runtime::RunState::Crashed(rec) => {
            let how = rec.as_ref().map(|r| r.describe()).unwrap_or_else(|| "exit status unknown".into());
            let ago = rec.as_ref().map(|r| format!(" {} s ago", layout::now_ms().saturating_sub(r.at_ms) / 1000));
            ("crashed", format!("crashed ({how}){}", ago.unwrap_or_default()))
        }
    };
    if pending {
        text.push_str(" (apply interrupted)");
    }
    // What `start --all` (at boot) does with it, when that is not "it runs".
    let desired = layout::desired(&dirs);
    let restart = plan.as_ref().map(|p| p.restart).unwrap_or_default();
    let up = matches!(run_state, runtime::RunState::Running(_));
    let crashed = matches!(run_state, runtime::RunState::Crashed(_));
    match (runtime::start_at_boot(desired, restart, crashed), up) {
        (false, true) => text.push_str(" (disabled: stays stopped at boot)"),
        (false, false) => text.push_str(" (stays stopped at boot)"),
        (true, false) => text.push_str(" (starts at boot)"),
        (true, true) => {}
    }
    json!({
        "name": name,
        "state": state,
        "state_text": text,
        "desired": desired,
        "restart": runtime::restart_word(restart),
        "apply_interrupted": pending,
        "exit": exit,
        "failed": failed,
        "pid": info.map(|i| i.pid),
        "started_ms": info.map(|i| i.started_ms),
        "base": plan.as_ref().map(|p| p.layer.base.clone()),
        "ipv4": plan.as_ref().and_then(|p| p.network.ipv4.clone()),
        "ipv6": plan.as_ref().and_then(|p| p.network.ipv6.clone()),
        "services_ready": ready,
        "services": total,
        "security": plan.as_ref().map(security_json),
        "user_namespace": plan.as_ref().and_then(|p| runtime::userns_view(root, p).ok()).map(|u| u.json),
        "status": status,
    })
}

/// What `status` says about a container's containment beyond the defaults (Podman's
/// eleven capabilities, no_new_privs, the default seccomp filter): PID 1's additions,
/// what `exec` gets, and each process that differs.
fn security_json(plan: &Plan) -> serde_json::Value {
    let pid1 = plan.pid1_security();
    let differs = |m: &mut serde_json::Map<String, serde_json::Value>, name: &str, s: &crate::plan::types::Security| {
        if !s.is_default() {
            m.insert(name.to_string(), json!(s));
        }
    };
    let mut services = serde_json::Map::new();
    for (n, s) in &plan.services {
        differs(&mut services, n, &s.security);
    }
    let mut init = serde_json::Map::new();
    for (n, t) in &plan.init {
        differs(&mut init, n, &t.security);
    }
    json!({
        "default_capabilities": crate::exec::caps::DEFAULT,
        "pid1": {"cap_add": pid1.cap_add, "seccomp_allow": pid1.seccomp_allow},
        "exec": plan.security,
        "services": services,
        "init": init,
    })
}

pub fn list(root: &Path, as_json: bool) -> ExitCode {
    let rows: Vec<serde_json::Value> = runtime::names(root).iter().map(|n| summary(root, n)).collect();
    if as_json {
        let rows: Vec<serde_json::Value> = rows
            .into_iter()
            .map(|mut r| {
                r.as_object_mut().map(|o| o.remove("status"));
                r
            })
            .collect();
        return out(&format!("{}\n", serde_json::to_string_pretty(&rows).unwrap_or_default()));
    }
    let mut s = format!("{:<20} {:<12} {:<8} {:<18} {:<28} {}\n", "NAME", "STATE", "PID", "IPV4", "IPV6", "SERVICES");
    let mut notes = String::new();
    for r in &rows {
        let col = |k: &str| r[k].as_str().map(|a| a.split('/').next().unwrap_or("").to_string()).unwrap_or("-".into());
        s.push_str(&format!(
            "{:<20} {:<12} {:<8} {:<18} {:<28} {}/{} ready\n",
            col("name"),
            r["state"].as_str().unwrap_or(""),
            r["pid"].as_i64().map(|p| p.to_string()).unwrap_or("-".into()),
            col("ipv4"),
            col("ipv6"),
            r["services_ready"],
            r["services"],
        ));
        let text = r["state_text"].as_str().unwrap_or("");
        if text != r["state"].as_str().unwrap_or("") {
            notes.push_str(&format!("{}: {text}\n", col("name")));
        }
    }
    if !notes.is_empty() {
        s.push('\n');
        s.push_str(&notes);
    }
    out(&s)
}

pub fn status(root: &Path, name: Option<&str>, as_json: bool) -> ExitCode {
    let names = match name {
        Some(n) => {
            if runtime::names(root).iter().all(|x| x != n) {
                return fail(RunError::NotFound(n.to_string()));
            }
            vec![n.to_string()]
        }
        None => runtime::names(root),
    };
    let rows: Vec<serde_json::Value> = names.iter().map(|n| summary(root, n)).collect();
    if as_json {
        let v = if name.is_some() { rows[0].clone() } else { json!(rows) };
        return out(&format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default()));
    }
    let mut s = String::new();
    for r in &rows {
        s.push_str(&format!("{}: {}", r["name"].as_str().unwrap_or(""), r["state_text"].as_str().unwrap_or("")));
        if let Some(pid) = r["pid"].as_i64() {
            s.push_str(&format!(", PID 1 is host pid {pid}"));
        }
        if let Some(ms) = r["started_ms"].as_u64() {
            let up = layout::now_ms().saturating_sub(ms) / 1000;
            s.push_str(&format!(", up {up} s"));
        }
        s.push('\n');
        for k in ["ipv4", "ipv6"] {
            if let Some(a) = r[k].as_str() {
                s.push_str(&format!("  {k}: {a}\n"));
            }
        }
        if let Some(sec) = r["security"].as_object() {
            s.push_str(&security_lines(sec));
        }
        if let Some(plan) = runtime::applied(root, r["name"].as_str().unwrap_or("")).ok().flatten() {
            if let Ok(u) = runtime::userns_view(root, &plan) {
                s.push_str(&format!("  {}\n", u.line));
            }
        }
        if let Ok(st) = serde_json::from_value::<Status>(r["status"].clone()) {
            for (n, svc) in &st.services {
                let mut line = format!("  service {n:<14} {:<10}", state_word(svc));
                if let Some(p) = svc.pid {
                    line.push_str(&format!(" pid {p}"));
                }
                line.push_str(&format!(" restarts {}", svc.restarts));
                match svc.last_exit.as_ref().map(|e| (e.code, e.signal.as_deref())) {
                    Some((Some(c), _)) => line.push_str(&format!(" last exit code {c}")),
                    Some((None, Some(sig))) => line.push_str(&format!(" last exit by {sig}")),
                    _ => {}
                }
                if let Some(m) = &svc.message {
                    line.push_str(&format!(" ({m})"));
                }
                s.push_str(&line);
                s.push('\n');
                if svc.log_dropped > 0 {
                    s.push_str(&format!(
                        "    log: {} lines dropped ({})\n",
                        svc.log_dropped,
                        svc.log_error.as_deref().unwrap_or("write error")
                    ));
                }
            }
            if st.status_error > 0 {
                s.push_str(&format!(
                    "  status.json: {} writes failed ({})\n",
                    st.status_error,
                    st.status_error_message.as_deref().unwrap_or("write error")
                ));
            }
            if st.notes_dropped > 0 {
                s.push_str(&format!("  supervisor.log: {} lines dropped\n", st.notes_dropped));
            }
            for (n, t) in &st.init {
                let w = serde_json::to_value(t.state).ok().and_then(|v| v.as_str().map(str::to_string));
                s.push_str(&format!("  init    {n:<14} {}\n", w.unwrap_or_default()));
            }
        }
    }
    out(&s)
}

/// The `security` lines of `status`: the defaults in one line, then every
/// difference, by process.
fn security_lines(sec: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut s =
        "  security: capabilities at most Podman's eleven, no_new_privs, seccomp filter (Docker's default, stricter)\n"
            .to_string();
    let describe = |v: &serde_json::Value| {
        serde_json::from_value::<crate::plan::types::Security>(v.clone()).map(|x| x.describe()).unwrap_or_default()
    };
    let pid1: Vec<&str> = sec["pid1"]["cap_add"].as_array().into_iter().flatten().filter_map(|v| v.as_str()).collect();
    if !pid1.is_empty() {
        s.push_str(&format!("    PID 1 keeps also {} (for its services)\n", pid1.join(" ")));
    }
    let exec = describe(&sec["exec"]);
    if !exec.is_empty() {
        s.push_str(&format!("    exec, shell: {exec}\n"));
    }
    for kind in ["services", "init"] {
        for (n, v) in sec[kind].as_object().into_iter().flatten() {
            let word = if kind == "services" { "service" } else { "init" };
            s.push_str(&format!("    {word} {n}: {}\n", describe(v)));
        }
    }
    s
}

/// Run `f` with the container's lock held; NotFound when there is no such container.
fn locked<T>(root: &Path, name: &str, f: impl FnOnce() -> Result<T, RunError>) -> Result<T, RunError> {
    if runtime::names(root).iter().all(|x| x != name) {
        return Err(RunError::NotFound(name.to_string()));
    }
    let _lock = runtime::lock(root, name, &mut say)?;
    f()
}

pub fn start(root: &Path, name: &str) -> ExitCode {
    let t = Instant::now();
    if runtime::names(root).iter().any(|n| n == name) {
        if let Err(e) = runtime::reap_crashed(root, name) {
            say(&format!("warning: {name}: cleaning up after its crash: {e}"));
        }
    }
    match locked(root, name, || runtime::start(root, name, &mut say)) {
        Ok(None) => tell(&format!("{name} is already running\n")),
        Ok(Some(st)) => match runtime::applied(root, name) {
            Ok(Some(plan)) => finish(&plan, &st, &format!("{name} started"), t),
            _ => tell(&format!("{name} started\n")),
        },
        Err(e) => fail(format!("start {name}: {e}")),
    }
}

pub fn stop(root: &Path, name: &str, timeout: Option<u64>) -> ExitCode {
    match locked(root, name, || runtime::stop_wanted(root, name, timeout.map(Duration::from_secs), &mut say)) {
        Ok(true) => tell(&format!("{name} stopped\n")),
        Ok(false) => tell(&format!("{name} was not running\n")),
        Err(e) => fail(format!("stop {name}: {e}")),
    }
}

/// `start --all`: every container back to what it should be (`desired.json`): those
/// to run started by the normal start path (network, nftables, cgroups), those
/// stopped left alone. One failure does not keep the others down; a line per
/// container on stdout, exit 1 if any failed.
pub fn start_all(root: &Path) -> ExitCode {
    // The last nftables batch survives a reboot, the table does not: rebuild it.
    let _ = std::fs::remove_file(layout::StateRoot::new(root).nft_cache());
    let mut failed = 0;
    for name in runtime::names(root) {
        let dirs = Dirs::new(root, &name);
        let policy = runtime::applied(root, &name).ok().flatten().map(|p| p.restart).unwrap_or_default();
        let crashed = matches!(runtime::run_state(root, &name), runtime::RunState::Crashed(_));
        let line = if !runtime::start_at_boot(layout::desired(&dirs), policy, crashed) {
            format!("{name}: stopped (left stopped; `container start {name}` starts it)\n")
        } else if !dirs.state().exists() {
            // Its first apply was interrupted: there is nothing to start from.
            format!("{name}: never applied completely (left alone; apply its spec)\n")
        } else {
            match locked(root, &name, || runtime::start(root, &name, &mut say)) {
                Ok(None) => format!("{name}: running already\n"),
                Ok(Some(st)) if runtime::failures(&st).is_empty() => format!("{name}: started\n"),
                Ok(Some(st)) => {
                    failed += 1;
                    format!("{name}: started, but failed: {}\n", runtime::failures(&st).join("; "))
                }
                Err(e) => {
                    failed += 1;
                    errln!("error: start {name}: {e}");
                    format!("{name}: failed to start\n")
                }
            }
        };
        // Printed as it goes: a slow container does not hide the others' results.
        let _ = out(&line);
    }
    if failed > 0 {
        errln!("error: {failed} container(s) failed to start");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// `stop --all`: stop every running container, keeping what each should be (so the
/// next `start --all` brings back those that ran). Exit 1 if any failed.
pub fn stop_all(root: &Path, timeout: Option<u64>) -> ExitCode {
    let mut failed = 0;
    for name in runtime::names(root) {
        let line = match locked(root, &name, || runtime::stop(root, &name, timeout.map(Duration::from_secs), &mut say))
        {
            Ok(true) => format!("{name}: stopped\n"),
            Ok(false) => format!("{name}: was not running\n"),
            Err(e) => {
                failed += 1;
                errln!("error: stop {name}: {e}");
                format!("{name}: failed to stop\n")
            }
        };
        let _ = out(&line);
    }
    if failed > 0 {
        errln!("error: {failed} container(s) failed to stop");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// `start --wait NAME` (for `container@.service`, `Type=notify`): start, tell systemd
/// it is ready, then wait while PID 1 runs (following a new PID 1 that `restart` or
/// `apply` put in its place). Exit 0 once it is stopped on purpose (`desired.json`
/// says stopped), 1 when PID 1 died while it was to run (systemd restarts the unit),
/// unless its restart policy is "no" (exit 0: it stays down, crashed).
pub fn start_wait(root: &Path, name: &str) -> ExitCode {
    let code = start(root, name);
    if code != ExitCode::SUCCESS {
        return code;
    }
    if let Err(e) = sd_notify("READY=1") {
        errln!("warning: cannot tell systemd the container is ready: {e}");
    }
    let dirs = Dirs::new(root, name);
    loop {
        // Under the lock: a `restart` or `apply` going on finishes first.
        let info = match runtime::lock(root, name, &mut say) {
            Ok(_lock) => layout::running(&dirs),
            Err(e) => return fail(e),
        };
        let Some(info) = info else {
            let policy = runtime::applied(root, name).ok().flatten().map(|p| p.restart).unwrap_or_default();
            return if layout::desired(&dirs) == layout::Desired::Stopped {
                let _ = out(&format!("{name} was stopped\n"));
                ExitCode::SUCCESS
            } else if !runtime::restart_after_crash(policy) {
                // Cleaned up now, so `status` says how it ended.
                let _ = runtime::reap_crashed(root, name);
                let _ = out(&format!("{name}: its PID 1 ended; restart = \"no\" leaves it down\n"));
                ExitCode::SUCCESS
            } else {
                fail(format!("{name}: its PID 1 ended while it was to run"))
            };
        };
        // A pidfd opened while the record still matches names that process for good.
        match crate::exec::process::Process::open(info.pid).filter(|_| info.alive()) {
            Some(p) => while !p.wait_exit(Duration::from_secs(3600)) {},
            None => continue,
        }
    }
}

/// Send `state` to systemd's notification socket (`NOTIFY_SOCKET`; nothing without
/// it): one datagram, as sd_notify(3) does; `@` starts an abstract name.
fn sd_notify(state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return Ok(()) };
    let bytes = path.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name)?,
        None => SocketAddr::from_pathname(std::path::Path::new(&path))?,
    };
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

/// `enable`/`disable NAME`: record what the container is to be at boot, changing
/// nothing that runs.
pub fn set_desired(root: &Path, name: &str, want: layout::Desired) -> ExitCode {
    let r = locked(root, name, || Ok(layout::write_desired(&Dirs::new(root, name), want)?));
    match (r, want) {
        (Ok(()), layout::Desired::Running) => out(&format!("{name} is enabled: `container start --all` starts it\n")),
        (Ok(()), layout::Desired::Stopped) => {
            out(&format!("{name} is disabled: `container start --all` leaves it stopped\n"))
        }
        (Err(e), _) => fail(e),
    }
}

pub fn restart(root: &Path, name: &str, timeout: Option<u64>) -> ExitCode {
    let t = Instant::now();
    let r = locked(root, name, || {
        // A secret it could not start with is said before anything stops.
        runtime::secrets::check(root, name)?;
        runtime::stop(root, name, timeout.map(Duration::from_secs), &mut say)?;
        runtime::start(root, name, &mut say)
    });
    match r {
        Ok(Some(st)) => match runtime::applied(root, name) {
            Ok(Some(plan)) => finish(&plan, &st, &format!("{name} restarted"), t),
            _ => tell(&format!("{name} restarted\n")),
        },
        Ok(None) => tell(&format!("{name} restarted\n")),
        Err(e) => fail(format!("restart {name}: {e}")),
    }
}

pub fn destroy(root: &Path, name: &str, volumes: bool) -> ExitCode {
    // Taking the lock creates the container's folder: not for a name that has none.
    if !Dirs::new(root, name).root.exists() {
        return fail(format!("destroy {name}: {}", RunError::NotFound(name.to_string())));
    }
    let r = {
        let lock = runtime::lock(root, name, &mut say);
        lock.and_then(|_l| runtime::destroy(root, name, volumes, &mut say))
    };
    match r {
        Ok(()) if volumes => tell(&format!("{name} destroyed, with its volumes and secrets\n")),
        Ok(()) => {
            let kept = Dirs::new(root, name).volumes();
            tell(&format!("{name} destroyed; volumes and secrets kept under {}\n", kept.parent().unwrap().display()))
        }
        Err(e) => fail(format!("destroy {name}: {e}")),
    }
}

/// What `container logs` prints of each service's log.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogOpts {
    pub follow: bool,
    /// The last N lines of each service (then, with `follow`, what comes).
    pub tail: Option<usize>,
    /// Only lines the supervisor received at or after this (Unix nanoseconds).
    pub since: Option<i64>,
    /// Prefix each line with the time it was received.
    pub timestamps: bool,
}

/// Print a service's log (rotated part first); with `follow`, keep printing what is
/// appended, across rotations, until interrupted. Times come from the supervisor's
/// `.t` files beside the logs (see `exec::supervisor::log`); a line without one (a
/// log from before times were kept) prints `-` for its time and never passes `--since`.
pub fn logs(root: &Path, name: &str, service: Option<&str>, opts: LogOpts) -> ExitCode {
    let dirs = Dirs::new(root, name);
    if runtime::names(root).iter().all(|x| x != name) {
        return fail(RunError::NotFound(name.to_string()));
    }
    // A container whose first apply failed or was interrupted has only the pending
    // plan: its logs are what tells why.
    let plan = match runtime::applied(root, name).and_then(|a| match a {
        Some(p) => Ok(Some(p)),
        None => runtime::pending(root, name),
    }) {
        Ok(Some(p)) => p,
        Ok(None) => return fail(RunError::NotFound(name.to_string())),
        Err(e) => return fail(e),
    };
    let services: Vec<String> = match service {
        Some(s) if plan.services.contains_key(s) => vec![s.to_string()],
        Some(s) => {
            let known: Vec<&str> = plan.services.keys().map(String::as_str).collect();
            return fail(format!("{name} has no service `{s}` (services: {})", known.join(", ")));
        }
        None => plan.services.keys().cloned().collect(),
    };
    let prefix = services.len() > 1;
    // The run folder is the container's: its logs are opened beneath it, never
    // through a symlink, regular files only (see `exec::beneath`).
    let run = match Beneath::open(&dirs.run()) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return ExitCode::SUCCESS,
        Err(e) => return fail(e),
    };
    let mut tails: Vec<Tail> = services.iter().map(|s| Tail::new(s, Dirs::service_log_in_run(s))).collect();
    let mut o = std::io::stdout().lock();
    let mut failed = false;
    let shown = |t: Option<i64>| opts.since.is_none_or(|since| t.is_some_and(|t| t >= since));
    for t in &mut tails {
        let label = t.label.clone();
        let mut lines: std::collections::VecDeque<(Option<i64>, Vec<u8>)> = std::collections::VecDeque::new();
        let mut keep = |time: Option<i64>, line: &[u8]| {
            if !shown(time) {
                return;
            }
            if opts.tail == Some(0) {
                return;
            }
            if opts.tail.is_some_and(|n| lines.len() >= n) {
                lines.pop_front();
            }
            lines.push_back((time, line.to_vec()));
        };
        let mut rotated = t.rel.clone().into_os_string();
        rotated.push(".1");
        let rotated = std::path::PathBuf::from(rotated);
        match run.open_read(&rotated) {
            Ok(Some(mut f)) => {
                let mut times = Times::default();
                t.copy(&mut f, 0, &run, &rotated, &mut times, &mut keep);
            }
            Ok(None) => {}
            Err(e) => {
                let _ = o.flush();
                errln!("error: {}: {e}", run.path().join(&rotated).display());
                failed = true;
            }
        }
        failed |= !t.poll(&run, &mut keep);
        if !opts.follow {
            t.finish(&mut keep);
        }
        for (time, line) in lines {
            print_line(&mut o, prefix.then_some(label.as_str()), opts.timestamps.then_some(time), &line);
        }
    }
    let _ = o.flush();
    if opts.follow {
        loop {
            std::thread::sleep(Duration::from_millis(200));
            for t in &mut tails {
                let label = t.label.clone();
                t.poll(&run, &mut |time, line| {
                    if shown(time) {
                        print_line(&mut o, prefix.then_some(label.as_str()), opts.timestamps.then_some(time), line);
                    }
                });
            }
            if o.flush().is_err() {
                break;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `[SERVICE | ][TIME ]LINE`.
fn print_line(o: &mut impl Write, label: Option<&str>, time: Option<Option<i64>>, line: &[u8]) {
    if let Some(l) = label {
        let _ = write!(o, "{l} | ");
    }
    match time {
        Some(Some(t)) => {
            let _ = write!(o, "{} ", super::since::rfc3339(t));
        }
        Some(None) => {
            let _ = write!(o, "{:<30} ", "-");
        }
        None => {}
    }
    let _ = o.write_all(line);
}

/// The times of one log file, read from its `.t` file as far as it goes.
#[derive(Default)]
struct Times {
    recs: Vec<(u64, i64)>,
    /// How far the `.t` file was read (whole records only).
    pos: u64,
}

impl Times {
    /// Reads the records appended to the times of log `rel` since the last call.
    /// A missing or refused times file leaves the lines without times.
    fn load(&mut self, run: &Beneath, rel: &Path) {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(Some(mut f)) = run.open_read(&supervisor::times_path(rel)) else { return };
        if f.seek(SeekFrom::Start(self.pos)).is_err() {
            return;
        }
        let mut data = Vec::new();
        if f.read_to_end(&mut data).is_err() {
            return;
        }
        let Some(end) = data.iter().rposition(|b| *b == b'\n') else { return };
        self.recs.extend(supervisor::parse_times(&data[..=end]));
        self.pos += end as u64 + 1;
    }

    /// The time of the line that starts at `off`: its record, or the one of the
    /// line before when its own is missing.
    fn at(&self, off: u64) -> Option<i64> {
        let i = self.recs.partition_point(|r| r.0 <= off);
        i.checked_sub(1).map(|i| self.recs[i].1)
    }
}

struct Tail {
    label: String,
    /// The log, relative to the run folder.
    rel: std::path::PathBuf,
    pos: u64,
    ino: u64,
    times: Times,
    /// The line being read (no newline yet) and its time.
    partial: Vec<u8>,
    mid_line: bool,
    line_time: Option<i64>,
    /// The time of the last line (a line continued across a rotation keeps it).
    last_time: Option<i64>,
    /// The file was refused (a symlink, a FIFO, …): reported once, never read.
    refused: bool,
}

impl Tail {
    fn new(label: &str, rel: std::path::PathBuf) -> Tail {
        Tail {
            label: label.to_string(),
            rel,
            pos: 0,
            ino: 0,
            times: Times::default(),
            partial: Vec::new(),
            mid_line: false,
            line_time: None,
            last_time: None,
            refused: false,
        }
    }

    /// Splits `bytes` (at offset `off` of a log whose times are `times`) into lines,
    /// each given to `out` with its time once it is complete.
    fn feed(&mut self, bytes: &[u8], mut off: u64, times: &Times, out: &mut dyn FnMut(Option<i64>, &[u8])) {
        let mut rest = bytes;
        while !rest.is_empty() {
            if !self.mid_line {
                self.line_time = times.at(off).or(self.last_time);
                self.mid_line = true;
            }
            let take = rest.iter().position(|b| *b == b'\n').map_or(rest.len(), |i| i + 1);
            self.partial.extend_from_slice(&rest[..take]);
            off += take as u64;
            if self.partial.last() == Some(&b'\n') {
                out(self.line_time, &self.partial);
                self.last_time = self.line_time;
                self.partial.clear();
                self.mid_line = false;
            }
            rest = &rest[take..];
        }
    }

    /// The last line when it has no newline (not following: nothing more comes).
    fn finish(&mut self, out: &mut dyn FnMut(Option<i64>, &[u8])) {
        if self.mid_line {
            out(self.line_time, &self.partial);
            self.partial.clear();
            self.mid_line = false;
        }
    }

    /// Everything `f` holds from offset `pos` on, in small pieces (a log may be
    /// large); the times are read after each piece, so they cover it.
    fn copy(
        &mut self,
        f: &mut std::fs::File,
        mut pos: u64,
        run: &Beneath,
        rel: &Path,
        times: &mut Times,
        out: &mut dyn FnMut(Option<i64>, &[u8]),
    ) -> u64 {
        use std::io::Read;
        let mut buf = vec![0u8; 64 << 10];
        let start = pos;
        loop {
            match f.read(&mut buf) {
                Ok(0) | Err(_) => return pos - start,
                Ok(n) => {
                    times.load(run, rel);
                    self.feed(&buf[..n], pos, times, out);
                    pos += n as u64;
                }
            }
        }
    }

    /// Gives `out` the lines appended since the last call; starts over after a
    /// rotation. Returns false when the log was refused (said once, on stderr).
    fn poll(&mut self, run: &Beneath, out: &mut dyn FnMut(Option<i64>, &[u8])) -> bool {
        use std::io::{Seek, SeekFrom};
        use std::os::unix::fs::MetadataExt;
        if self.refused {
            return false;
        }
        let mut f = match run.open_read(&self.rel) {
            Ok(Some(f)) => f,
            Ok(None) => return true,
            Err(e) => {
                let _ = std::io::stdout().flush();
                errln!("error: {}: {e}", run.path().join(&self.rel).display());
                self.refused = true;
                return false;
            }
        };
        let Ok(meta) = f.metadata() else { return true };
        if meta.ino() != self.ino || meta.len() < self.pos {
            self.ino = meta.ino();
            self.pos = 0;
            self.times = Times::default();
        }
        if f.seek(SeekFrom::Start(self.pos)).is_err() {
            return true;
        }
        let mut times = std::mem::take(&mut self.times);
        let rel = self.rel.clone();
        self.pos += self.copy(&mut f, self.pos, run, &rel, &mut times, out);
        self.times = times;
        true
    }
}

pub fn exec(root: &Path, name: &str, argv: Vec<String>, tty: bool, workdir: &str, env: &[String]) -> ExitCode {
    let mut opts = runtime::enter::ExecOpts::new(argv);
    opts.tty = tty;
    opts.workdir = workdir.to_string();
    if tty {
        let term = std::env::var("TERM").unwrap_or_else(|_| "xterm".into());
        opts.env.insert("TERM".into(), term);
    }
    opts.env.insert("HOME".into(), "/root".into());
    for kv in env {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                opts.env.insert(k.to_string(), v.to_string());
            }
            _ => return fail(format!("--env {kv:?}: expected KEY=VALUE")),
        }
    }
    match runtime::enter::exec(root, name, opts) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
        Err(RunError::Attach(e)) => fail(format!("exec in {name}: {e}")),
        Err(e) => fail(e),
    }
}

pub fn shell(root: &Path, name: &str) -> ExitCode {
    match runtime::enter::login_shell(root, name) {
        Ok(sh) => exec(root, name, vec![sh.to_string(), "-l".to_string()], true, "/", &[]),
        Err(e) => fail(e),
    }
}

pub fn secret_list(root: &Path, name: &str, as_json: bool) -> ExitCode {
    let list = match runtime::secrets::list(root, name) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    if as_json {
        return out(&format!("{}\n", serde_json::to_string_pretty(&list).unwrap_or_default()));
    }
    if list.is_empty() {
        return out(&format!("{name} has no secrets\n"));
    }
    let mut s = format!("{:<28} {:<10} {}\n", "SECRET", "STATE", "USED BY");
    for i in &list {
        let state = if i.regenerate { format!("{} (new value at next apply)", i.state) } else { i.state.clone() };
        let used = if i.used_by.is_empty() { "-".to_string() } else { i.used_by.join(", ") };
        s.push_str(&format!("{:<28} {:<10} {used}\n", i.name, state));
    }
    out(&s)
}

pub fn secret_regenerate(root: &Path, name: &str, key: &str) -> ExitCode {
    match locked(root, name, || runtime::secrets::regenerate(root, name, key)) {
        Ok(_) => out(&format!(
            "secret {key} of {name}: a new value is made by the next `container apply` of its spec \
             (`container plan` shows what it changes)\n"
        )),
        Err(e) => fail(format!("secret regenerate {name} {key}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::reach;
    use crate::plan::compile::test_plan;

    #[test]
    fn hints_name_only_what_outside_reaches_and_the_published_ports() {
        let plan = test_plan(
            "name = \"w\"\n[network]\nipv4 = \"100.72.0.9\"\npublish = [\"127.0.0.1:8443:80\", \"5353:53/udp\"]\n\
             [[services.caddy.sites]]\nhosts = [\"example.org\"]\nroot = \"/srv/www\"\n\
             [services.mysql]\nbind_address = \"127.0.0.1\"\n",
        );
        let text = reach(&plan);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.contains(&"  caddy listens on tcp/80: 100.72.0.9:80"), "{text}");
        assert!(lines.contains(&"  try: curl http://100.72.0.9:80/"), "{text}");
        // Caddy's admin API and a MariaDB on 127.0.0.1 are the container's alone.
        assert!(lines.contains(&"  caddy listens on tcp/2019 inside the container only (its loopback)"), "{text}");
        assert!(lines.contains(&"  mariadb listens on tcp/3306 inside the container only (its loopback)"), "{text}");
        assert!(!text.contains("100.72.0.9:2019") && !text.contains("100.72.0.9:3306"), "{text}");
        assert!(lines.contains(&"  published: 127.0.0.1:8443 → tcp/80"), "{text}");
        assert!(lines.contains(&"  published: any host address, port 5353 → udp/53"), "{text}");
    }
}
