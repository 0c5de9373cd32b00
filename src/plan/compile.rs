//! Compile a loaded spec into a `Plan`.
//!
//! Invariant: pure. Steps: `on_spec` hooks → base resources from the spec → modules
//! expand and compile → `on_plan` hooks → whole-plan checks. Any problem stops the
//! compile and is reported with its location; no partial plan escapes.

use super::pool::AddressPool;
use super::text::Text;
use super::types::*;
use crate::diag::{Problem, SpecErrors};
use crate::modules::Ctx;
use crate::script::Hooks;
use crate::spec::host::HostConfig;
use crate::spec::node::Path;
use crate::spec::types::{MountKind, NetMode, Spec};
use crate::spec::Loaded;
use crate::vocab::source::SourceReader;
use crate::vocab::values::{volume_name, IfaceName, IpAddress, Ipv4Host, Ipv6Host, SignalName, SourcePath};
use std::collections::{BTreeMap, BTreeSet};

/// Everything a compile may look at besides the spec.
pub struct Env<'a> {
    pub pool: &'a AddressPool,
    pub reader: &'a dyn SourceReader,
    /// The host configuration (`spec::host`): defaults a spec's own values override.
    pub host: &'a HostConfig,
}

/// `spec` with the host configuration's defaults for what it leaves out: the Debian
/// mirrors (a Debian base only) and the name servers (a container with a network of
/// its own only).
fn with_host_defaults(mut spec: Spec, host: &HostConfig) -> Spec {
    if spec.base.0.starts_with("debian:") {
        spec.mirror = spec.mirror.or_else(|| host.debian.mirror.clone());
        spec.security_mirror = spec.security_mirror.or_else(|| host.debian.security_mirror.clone());
    }
    if spec.network.nameservers.is_empty() && spec.network.mode != Some(NetMode::Host) {
        spec.network.nameservers = host.network.nameservers.clone();
    }
    spec
}

/// Compile a loaded spec. Errors are located in the spec (or in a hook script).
pub fn compile(loaded: &Loaded, env: &Env) -> Result<Plan, SpecErrors> {
    let hooks = Hooks::load(&loaded.spec, env.reader).map_err(|e| script_errors(loaded, e))?;
    let spec = hooks.on_spec(loaded.spec.clone()).map_err(|e| script_errors(loaded, e))?;
    let spec = with_host_defaults(spec, env.host);
    let mut problems = Vec::new();
    let plan = resources(&spec, env, &mut problems);
    if !problems.is_empty() {
        return Err(loaded.errors(problems));
    }
    let plan = hooks.on_plan(plan).map_err(|e| script_errors(loaded, e))?;
    let mut plan = plan;
    finish(&mut plan, &mut problems);
    if !problems.is_empty() {
        return Err(loaded.errors(problems));
    }
    Ok(plan)
}

fn script_errors(loaded: &Loaded, e: Vec<crate::script::ScriptProblem>) -> SpecErrors {
    let mut errs = loaded.errors(Vec::new());
    for sp in e {
        match sp.source {
            // Inline scripts live in the spec: name them after it.
            Some(mut src) if src.name.starts_with("hooks[") => {
                src.name = format!("{}#{}", loaded.file, src.name);
                errs.push_in(src, sp.problem)
            }
            Some(src) => errs.push_in(src, sp.problem),
            None => errs.push(crate::spec::locate(&loaded.tree, sp.problem)),
        }
    }
    errs
}

/// Resources from the spec itself, then every module.
fn resources(spec: &Spec, env: &Env, problems: &mut Vec<Problem>) -> Plan {
    let name = spec.name.0.clone();
    let pool = env.pool.clone().within(super::pool::Ranges::of(env.host));
    let network = network(spec, &pool, problems);
    let mut plan = Plan {
        format: PLAN_FORMAT,
        hostname: spec.hostname.clone().unwrap_or_else(|| name.clone()),
        name,
        layer: Layer {
            base: spec.base.clone(),
            mirror: spec.mirror.clone(),
            security_mirror: spec.security_mirror.clone(),
            arch: spec.arch.clone(),
            packages: BTreeSet::new(),
            steps: Vec::new(),
        },
        files: BTreeMap::new(),
        mounts: BTreeMap::new(),
        devices: BTreeSet::new(),
        network,
        services: BTreeMap::new(),
        init: BTreeMap::new(),
        ports: BTreeMap::new(),
        loopback_ports: BTreeSet::new(),
        secrets: BTreeSet::new(),
        limits: LimitsRes {
            memory: spec.limits.memory.as_ref().map(|s| s.0),
            pids: spec.limits.pids,
            cpu_weight: spec.limits.cpu_weight,
        },
        security: security(&spec.security.processes()),
        host_root: !spec.security.user_namespace(),
        restart: spec.restart,
    };
    let mut cx = Ctx::new(&mut plan, problems);
    for p in &spec.packages {
        cx.package(p);
    }
    for (i, f) in spec.files.iter().enumerate() {
        let content = match (&f.content, &f.source) {
            (Some(c), _) => c.clone(),
            (None, Some(src)) => match env.reader.read(src) {
                Ok(c) => c,
                Err(e) => {
                    cx.error(
                        &format!("files[{i}].source"),
                        e,
                        Some("a regular file inside the spec's folder (symlinks are followed only while they stay inside), at most 1 MiB"),
                    );
                    continue;
                }
            },
            (None, None) => continue,
        };
        let mode = f.mode.clone().unwrap_or_else(default_mode);
        let owner = f.owner.clone().unwrap_or_else(|| default_owner().0);
        cx.file_with(&f.path.0, content, mode, &owner);
    }
    if !spec.network.nameservers.is_empty() {
        let mut rc = String::new();
        for ns in &spec.network.nameservers {
            rc.push_str(&format!("nameserver {ns}\n"));
        }
        cx.file("/etc/resolv.conf", rc);
    }
    for m in &spec.mounts {
        let target = &m.target.0;
        match m.kind {
            MountKind::Volume => {
                let src = m.source.clone().unwrap_or_else(|| volume_name(target));
                cx.volume(target, &src, m.owner.as_ref().map(|o| o.0.as_str()), m.mode.clone());
            }
            MountKind::Tmpfs => {
                cx.tmpfs(target, m.size.as_ref().map(|s| s.0), m.owner.as_ref().map(|o| o.0.as_str()), m.mode.clone())
            }
            MountKind::Bind => {
                cx.plan.mounts.insert(
                    target.clone(),
                    MountRes {
                        kind: MountKind::Bind,
                        // Validated: an absolute host path without `..`.
                        source: m.source.as_ref().map(|s| SourcePath(s.clone())),
                        size: None,
                        read_only: m.read_only,
                        owner: None,
                        mode: None,
                        origin: "spec".into(),
                    },
                );
            }
        }
        if m.read_only {
            if let Some(res) = cx.plan.mounts.get_mut(target) {
                res.read_only = true;
            }
        }
    }
    for (pname, p) in &spec.processes {
        let mut svc = ServiceRes::new(&p.command);
        svc.user = p.user.clone();
        svc.env = p.env.clone();
        svc.workdir = p.workdir.clone();
        svc.restart = p.restart;
        svc.ready = p.ready.clone();
        svc.after = p.after.iter().cloned().collect();
        svc.reload = p.reload_signal.as_deref().and_then(|s| SignalName::parse(s).ok()).map(Reload::Signal);
        svc.uses = p.uses.iter().map(|u| u.0.clone()).collect();
        svc.security = security(&p.security);
        if let Some(c) = p.security.cap_add.iter().find(|c| p.security.cap_drop.contains(c)) {
            cx.error(
                &format!("processes.{pname}.security.cap_drop"),
                format!("capability {c} is both added and dropped"),
                None,
            );
        }
        if let Some(crate::spec::types::Ready::Tcp(port)) = &p.ready {
            cx.listen(crate::spec::values::Proto::Tcp, port.0, pname, &format!("processes.{pname}.ready"));
        }
        cx.service(pname, svc);
    }

    let mut services = spec.services.clone();
    let mut expand_problems = Vec::new();
    services.expand(&mut expand_problems);
    cx.extend_problems(expand_problems);
    services.compile(&mut cx);
    plan
}

/// A spec's `security` as plan data (not yet folded into the container's).
fn security(s: &crate::spec::types::SecuritySpec) -> Security {
    Security {
        cap_add: s.cap_add.iter().map(|c| c.0.clone()).collect(),
        cap_drop: s.cap_drop.iter().map(|c| c.0.clone()).collect(),
        seccomp_allow: s.seccomp_allow.iter().map(|c| c.0.clone()).collect(),
        no_new_privs: s.no_new_privs.unwrap_or(true),
    }
}

/// Check the names a hook may have written, fold the container's `security` into
/// every process's and make every one canonical.
fn fold_security(plan: &mut Plan, problems: &mut Vec<Problem>) {
    let mut check = |what: &str, sec: &Security| {
        for c in sec.cap_add.iter().chain(&sec.cap_drop) {
            if crate::vocab::caps::canonical(c) != Some(c.as_str()) {
                problems.push(Problem::new(format!("{what}: unknown capability `{c}`")).at(Path::parse("hooks")));
            }
        }
        for n in &sec.seccomp_allow {
            if crate::vocab::syscalls::number(n).is_none() {
                problems.push(Problem::new(format!("{what}: unknown system call `{n}`")).at(Path::parse("hooks")));
            }
        }
    };
    check("security", &plan.security);
    for (n, s) in &plan.services {
        check(&format!("service {n}"), &s.security);
    }
    for (n, t) in &plan.init {
        check(&format!("init task {n}"), &t.security);
    }
    let outer = plan.security.clone();
    for s in plan.services.values_mut() {
        s.security = s.security.within(&outer);
    }
    for t in plan.init.values_mut() {
        t.security = t.security.within(&outer);
    }
    plan.security = outer.canonical();
}

fn network(spec: &Spec, pool: &AddressPool, problems: &mut Vec<Problem>) -> NetworkRes {
    let n = &spec.network;
    let has_addr = n.ipv4.is_some() || n.ipv6.is_some();
    let mode = n.mode.unwrap_or(if has_addr { NetMode::Routed } else { NetMode::None });
    let name = &spec.name.0;
    let mut auto = false;
    let mut fail = |field: &str, msg: String| {
        problems.push(
            Problem::new(msg).at(Path::parse(&format!("network.{field}"))).help("choose another address, or \"auto\""),
        );
    };
    let ipv4 = n.ipv4.as_ref().and_then(|want| {
        auto |= want.0.is_none();
        match pool.v4(name, want.0) {
            Ok(a) => Some(Ipv4Host(a)),
            Err(e) => {
                fail("ipv4", e);
                None
            }
        }
    });
    let ipv6 = n.ipv6.as_ref().and_then(|want| {
        auto |= want.0.is_none();
        match pool.v6(name, want.0) {
            Ok(a) => Some(Ipv6Host(a)),
            Err(e) => {
                fail("ipv6", e);
                None
            }
        }
    });
    NetworkRes {
        mode,
        ipv4,
        ipv6,
        auto,
        nat: n.nat,
        // Validated like an interface name.
        proxy_arp: n.proxy_arp.as_ref().map(|i| IfaceName(i.clone())),
        prefixes: n.prefixes.iter().cloned().collect(),
        publish: n.publish.iter().cloned().collect(),
        nameservers: n.nameservers.iter().map(|a| IpAddress(*a)).collect(),
        sysctls: BTreeMap::new(),
    }
}

/// Whole-plan checks, run after every hook had its say.
pub fn finish(plan: &mut Plan, problems: &mut Vec<Problem>) {
    fold_security(plan, problems);
    let at = |origin: &str, name: &str, field: &str| -> Path {
        if origin == "spec" {
            Path::parse(&format!("processes.{name}.{field}"))
        } else if origin == "hook" {
            Path::parse("hooks")
        } else {
            Path::parse(&format!("services.{origin}"))
        }
    };
    for (name, svc) in &plan.services {
        for dep in &svc.after {
            if !plan.services.contains_key(dep) {
                let known: Vec<&str> = plan.services.keys().map(String::as_str).collect();
                let mut p =
                    Problem::new(format!("`{name}` waits for `{dep}`, which is not a service of this container"))
                        .at(at(&svc.origin, name, "after"));
                p = p.help(match crate::diag::did_you_mean(dep, known.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("services here: {}", known.join(", ")),
                });
                problems.push(p);
            }
        }
        for f in &svc.uses {
            if !plan.files.contains_key(f) {
                problems.push(
                    Problem::new(format!("`{name}` uses {f}, which is not a file of this container"))
                        .at(at(&svc.origin, name, "uses"))
                        .help("list files declared under `files` or rendered by a module"),
                );
            }
        }
        if svc.command.is_empty() {
            problems.push(Problem::new(format!("service `{name}` has an empty command")).at(at(
                &svc.origin,
                name,
                "command",
            )));
        }
    }
    for (id, task) in &plan.init {
        for dep in &task.after {
            if !plan.services.contains_key(dep) {
                problems.push(
                    Problem::new(format!("init task `{id}` waits for `{dep}`, which is not a service")).at(at(
                        &task.origin,
                        id,
                        "after",
                    )),
                );
            }
        }
    }
    if let Some(cycle) = find_cycle(plan) {
        let first = &plan.services[&cycle[0]];
        problems.push(
            Problem::new(format!("services wait for each other in a circle: {}", cycle.join(" → ")))
                .at(at(&first.origin, &cycle[0], "after"))
                .help("remove one of the `after` entries"),
        );
    }
    // Rules across fields; hooks' plans were checked when they returned (at the
    // hook), so what is left here is a module's mistake.
    for (at, message) in plan.problems() {
        problems.push(Problem::new(format!("{message} (at `{at}`)")).at(Path::parse("hooks")));
    }
    let mut secrets = BTreeSet::new();
    let mut note = |t: &Text| secrets.extend(t.secrets().map(str::to_string));
    for f in plan.files.values() {
        note(&f.content);
    }
    for t in plan.init.values() {
        if let Some(s) = &t.stdin {
            note(s);
        }
    }
    plan.secrets.extend(secrets);
}

/// A dependency cycle among services, if any (names in order, first repeated last).
fn find_cycle(plan: &Plan) -> Option<Vec<String>> {
    fn visit<'a>(
        plan: &'a Plan,
        n: &'a str,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|s| *s == n) {
            let mut c: Vec<String> = stack[pos..].iter().map(|s| s.to_string()).collect();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n);
        if let Some(svc) = plan.services.get(n) {
            for d in &svc.after {
                if let Some(c) = visit(plan, d, stack, done) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        done.insert(n);
        None
    }
    let mut done = BTreeSet::new();
    for n in plan.services.keys() {
        if let Some(c) = visit(plan, n, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

/// Compile TOML text with an empty pool and no readable files (unit tests).
#[cfg(test)]
pub fn test_plan(toml_text: &str) -> Plan {
    match try_test_plan(toml_text) {
        Ok(p) => p,
        Err(e) => panic!("spec did not compile:\n{}", e.brief().join("\n")),
    }
}

/// Like `test_plan`, but returns the errors.
#[cfg(test)]
pub fn try_test_plan(toml_text: &str) -> Result<Plan, SpecErrors> {
    struct NoFiles;
    impl SourceReader for NoFiles {
        fn read(&self, rel: &str) -> Result<String, String> {
            Err(format!("no file `{rel}` in unit tests"))
        }
    }
    let (spec, tree, text) = crate::spec::parse_bytes("test.toml", toml_text.as_bytes(), crate::spec::Format::Toml)?;
    let loaded = Loaded { spec, tree, file: "test.toml".into(), text, dir: std::path::PathBuf::new() };
    compile(&loaded, &Env { pool: &AddressPool::default(), reader: &NoFiles, host: &HostConfig::default() })
}

#[cfg(test)]
mod security_tests {
    use super::*;

    #[test]
    fn container_security_folds_into_every_process_and_pid1_keeps_the_union() {
        let plan = test_plan(
            r#"
name = "t"
base = "host"
[security]
cap_add = ["NET_RAW"]
cap_drop = ["CHOWN"]
seccomp_allow = ["ptrace"]
[processes.a]
command = ["true"]
[processes.b]
command = ["true"]
[processes.b.security]
cap_add = ["chown", "CAP_NET_ADMIN"]
cap_drop = ["NET_RAW", "KILL"]
no_new_privs = false
"#,
        );
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<String>>();
        assert_eq!(plan.security.cap_add, set(&["NET_RAW"]));
        let a = &plan.services["a"].security;
        assert_eq!((a.cap_add.clone(), a.cap_drop.clone()), (set(&["NET_RAW"]), set(&["CHOWN"])));
        assert_eq!(a.seccomp_allow, set(&["ptrace"]));
        assert!(a.no_new_privs);
        // The process's own add and drop win over the container's.
        let b = &plan.services["b"].security;
        assert_eq!((b.cap_add.clone(), b.cap_drop.clone()), (set(&["NET_ADMIN"]), set(&["KILL"])));
        assert!(!b.no_new_privs);
        assert_eq!(b.describe(), "capabilities +NET_ADMIN -KILL; seccomp allows ptrace; no_new_privs off");
        // PID 1: the default set plus every addition, and SYS_ADMIN for b's opt-out.
        let pid1 = plan.pid1_security();
        assert_eq!(pid1.cap_add, set(&["NET_ADMIN", "NET_RAW", "SYS_ADMIN"]));
        assert!(pid1.cap_drop.is_empty());
        assert_eq!(pid1.seccomp_allow, set(&["ptrace"]));
    }

    #[test]
    fn a_capability_added_and_dropped_is_an_error() {
        let e = try_test_plan(
            "name = \"t\"\nbase = \"host\"\n[processes.a]\ncommand = [\"true\"]\n\
             [processes.a.security]\ncap_add = [\"KILL\"]\ncap_drop = [\"KILL\"]\n",
        );
        assert!(e.is_err());
    }
}

/// One host-side effect of a container, as a plan resource: what its network puts on
/// the host (routes, proxy neighbour entries, sysctls) and its rules in the tool's
/// nftables table. Derived from the plan's network alone (pure), by the same rules
/// `exec::net::setup_steps` and `exec::nft::batch_for` follow (a unit test there
/// holds the two together), so `plan` shows them before anything happens. The host
/// end of the veth is named from the state root as well (`StateRoot::host_key`), so
/// it is "the veth" here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEffect {
    pub kind: super::diff::ResourceKind,
    /// Stable id within its kind.
    pub name: String,
    /// One line for the listing.
    pub summary: String,
}

/// The host-side effects of a network, in display order.
pub fn host_effects(n: &NetworkRes) -> Vec<HostEffect> {
    use super::diff::ResourceKind as K;
    let mut out = Vec::new();
    if n.mode != NetMode::Routed {
        return out;
    }
    let mut push = |kind, name: String, summary: String| out.push(HostEffect { kind, name, summary });
    let (v4, v6) = (n.ipv4_addr(), n.ipv6_addr());
    if let Some(a) = v4 {
        push(K::Route, format!("{a}/32"), format!("{a}/32 dev (veth), host route to the container"));
    }
    if let Some(a) = v6 {
        push(K::Route, format!("{a}/128"), format!("{a}/128 dev (veth), host route to the container"));
    }
    for p in &n.prefixes {
        let via = if p.0.addr.is_ipv4() { v4.map(|a| a.to_string()) } else { v6.map(|a| a.to_string()) };
        let via = via.map(|v| format!(" via {v}")).unwrap_or_default();
        push(
            K::Route,
            format!("{}/{}", p.0.addr, p.0.len),
            format!("{}/{}{via} dev (veth), routed prefix", p.0.addr, p.0.len),
        );
    }
    let routes_v4 = v4.is_some() || n.prefixes.iter().any(|p| p.0.addr.is_ipv4());
    let routes_v6 = v6.is_some() || n.prefixes.iter().any(|p| p.0.addr.is_ipv6());
    let mut sysctl = |key: String, why: &str| {
        let summary = format!("{key} = 1 (host, {why})");
        push(K::Sysctl, key, summary)
    };
    if routes_v4 {
        sysctl("net.ipv4.ip_forward".into(), "shared, kept");
    }
    if routes_v6 {
        sysctl("net.ipv6.conf.all.forwarding".into(), "shared, kept");
    }
    if v4.is_some() && !n.publish.is_empty() {
        sysctl("net.ipv4.conf.(veth).route_localnet".into(), "127.0.0.1 reaches published ports");
    }
    if let Some(uplink) = &n.proxy_arp {
        if v4.is_some() {
            sysctl(format!("net.ipv4.conf.{uplink}.proxy_arp"), "proxy ARP, shared, kept");
        }
        if v6.is_some() {
            sysctl(format!("net.ipv6.conf.{uplink}.proxy_ndp"), "proxy NDP, shared, kept");
        }
    }
    if let (Some(uplink), Some(a)) = (&n.proxy_arp, v6) {
        push(
            K::Neighbour,
            format!("proxy {a} dev {uplink}"),
            format!("proxy {a} dev {uplink} (answers NDP for the container)"),
        );
    }
    // The tool's nftables table (`exec::nft`).
    for (fam, own, lo) in
        [("ipv4", v4.map(|a| a.to_string()), "127.0.0.0/8"), ("ipv6", v6.map(|a| a.to_string()), "::1")]
    {
        let mut allowed: Vec<String> = own.into_iter().collect();
        allowed.extend(
            n.prefixes
                .iter()
                .filter(|p| p.0.addr.is_ipv4() == (fam == "ipv4"))
                .map(|p| format!("{}/{}", p.0.addr, p.0.len)),
        );
        if fam == "ipv6" {
            allowed.push("fe80::/10".into());
        }
        let from = if allowed.is_empty() {
            "every source".to_string()
        } else {
            format!("sources other than {}", allowed.join(", "))
        };
        push(K::Nft, format!("fence {fam}"), format!("fence {fam}: from the veth, drop {from} and destination {lo}"));
    }
    if let (true, Some(a)) = (n.nat, v4) {
        push(K::Nft, "masquerade".into(), format!("masquerade {a} when it leaves by another interface (nat)"));
    }
    if v4.is_some() && !n.publish.is_empty() {
        push(
            K::Nft,
            "masquerade 127.0.0.0/8".into(),
            "masquerade 127.0.0.0/8 into the veth (published ports from the host's loopback)".into(),
        );
    }
    for p in &n.publish {
        let r = &p.0;
        let targets = v4.map(std::net::IpAddr::V4).into_iter().chain(v6.map(std::net::IpAddr::V6));
        for to in targets {
            if r.host_ip.is_some_and(|h| h.is_ipv4() != to.is_ipv4()) {
                continue;
            }
            let fam = if to.is_ipv4() { "ipv4" } else { "ipv6" };
            let dst = match to {
                std::net::IpAddr::V4(a) => format!("{a}:{}", r.container_port),
                std::net::IpAddr::V6(a) => format!("[{a}]:{}", r.container_port),
            };
            let on = r.host_ip.map(|h| h.to_string()).unwrap_or_else(|| "any host address".into());
            push(
                K::Nft,
                format!("dnat {p} {fam}"),
                format!("dnat {}/{} on {on} → {dst} (prerouting, output)", r.proto, r.host_port),
            );
        }
    }
    out
}

#[cfg(test)]
mod restart_tests {
    use super::*;
    use crate::spec::types::Restart;

    #[test]
    fn the_container_restart_policy_is_recorded_and_defaults_to_on_failure() {
        let p = test_plan("name = \"t\"\nbase = \"host\"\n");
        assert_eq!(p.restart, Restart::OnFailure);
        assert!(serde_json::to_value(&p).unwrap().get("restart").is_none(), "the default is left out");
        let p = test_plan("name = \"t\"\nbase = \"host\"\nrestart = \"no\"\n");
        assert_eq!(p.restart, Restart::No);
        assert_eq!(serde_json::to_value(&p).unwrap()["restart"], "no");
        assert!(try_test_plan("name = \"t\"\nbase = \"host\"\nrestart = \"sometimes\"\n").is_err());
    }
}
