//! Diff two plans into changes, each with its least disruptive action.
//!
//! Invariant: pure. A plan is cut into resources with stable ids (`file /etc/x`,
//! `service caddy`, ...); resources are compared by value. The effect of a change is
//! decided here, once: rebuild the layer, recreate the container, reconfigure the
//! network, rewrite a file and reload/restart exactly the services that use it, run
//! an init task.

use super::types::*;
use crate::spec::types::MountKind;
use serde::Serialize;
use serde_json::{json, Value};

/// What happens to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    Create,
    Update,
    /// Destroy and create again (the resource cannot change in place).
    Replace,
    Delete,
}

impl ChangeOp {
    pub fn symbol(self) -> &'static str {
        match self {
            ChangeOp::Create => "+",
            ChangeOp::Update => "~",
            ChangeOp::Replace => "±",
            ChangeOp::Delete => "-",
        }
    }
}

/// What apply does for a change, least disruptive first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "action", content = "target", rename_all = "kebab-case")]
pub enum Effect {
    RunInit(String),
    WriteFile(String),
    ReloadService(String),
    RestartService(String),
    StartService(String),
    StopService(String),
    CreateSecret(String),
    ReconfigureNetwork,
    RecreateContainer,
    BuildLayer,
    RebuildLayer,
    CreateContainer,
}

impl std::fmt::Display for Effect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Effect::RunInit(t) => write!(f, "run init task {t}"),
            Effect::WriteFile(p) => write!(f, "write {p}"),
            Effect::ReloadService(s) => write!(f, "reload {s}"),
            Effect::RestartService(s) => write!(f, "restart {s}"),
            Effect::StartService(s) => write!(f, "start {s}"),
            Effect::StopService(s) => write!(f, "stop {s}"),
            Effect::CreateSecret(_) => f.write_str("generate its value (stored 0600, never shown)"),
            Effect::ReconfigureNetwork => f.write_str("reconfigure network"),
            Effect::RecreateContainer => f.write_str("recreate container"),
            Effect::BuildLayer => f.write_str("build layer"),
            Effect::RebuildLayer => f.write_str("rebuild layer"),
            Effect::CreateContainer => f.write_str("create container"),
        }
    }
}

/// One resource of a plan, as diffed and shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub kind: &'static str,
    pub name: String,
    /// One line for the listing (after `kind`).
    pub summary: String,
    /// Compared value; `origin` fields are left out so moving a file between
    /// modules without changing it is no change.
    pub value: Value,
    /// File content (redacted), shown in full or as a diff.
    pub body: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub op: ChangeOp,
    pub kind: &'static str,
    pub name: String,
    #[serde(skip)]
    pub summary: String,
    pub effects: Vec<Effect>,
    /// Changed fields as `field: before → after` (non-file resources).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// Unified diff of the redacted content (files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// Full redacted content of a new file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Changes {
    pub container: String,
    /// True when nothing was applied before.
    pub new: bool,
    pub changes: Vec<Change>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
    pub fn count(&self, op: ChangeOp) -> usize {
        self.changes.iter().filter(|c| c.op == op || (op == ChangeOp::Create && c.op == ChangeOp::Replace)).count()
    }
    /// Destroy count: deletes and replacements (Terraform counts a replace in both).
    pub fn destroyed(&self) -> usize {
        self.changes.iter().filter(|c| matches!(c.op, ChangeOp::Delete | ChangeOp::Replace)).count()
    }
}

fn strip_origin(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.remove("origin");
    }
    v
}

fn to_value<T: Serialize>(t: &T) -> Value {
    strip_origin(serde_json::to_value(t).unwrap_or(Value::Null))
}

/// Cut a plan into resources, in display order.
pub fn resources(plan: &Plan) -> Vec<Resource> {
    let mut out = Vec::new();
    let mut summary = if plan.devices.is_empty() {
        format!("{} ({})", plan.name, plan.layer.base)
    } else {
        let devs: Vec<&str> = plan.devices.iter().map(|d| d.as_str()).collect();
        format!("{} ({}), devices {}", plan.name, plan.layer.base, devs.join(" "))
    };
    if plan.host_root {
        summary.push_str(", user namespace: off (container root is host root)");
    }
    if !plan.security.is_default() {
        summary.push_str(&format!(", security: {}", plan.security.describe()));
    }
    let mut value = json!({"hostname": plan.hostname, "devices": plan.devices, "limits": plan.limits});
    if plan.host_root {
        value["host_root"] = json!(true);
    }
    // PID 1's bounding set and filter are fixed when the container starts: a process
    // that needs more than it has recreates the container.
    let pid1 = plan.pid1_security();
    if !pid1.cap_add.is_empty() || !pid1.seccomp_allow.is_empty() {
        value["pid1"] = json!({"cap_add": pid1.cap_add, "seccomp_allow": pid1.seccomp_allow});
    }
    if !pid1.cap_add.is_empty() {
        let caps: Vec<&str> = pid1.cap_add.iter().map(String::as_str).collect();
        summary.push_str(&format!(", PID 1 keeps also {} for its processes", caps.join(" ")));
    }
    out.push(Resource { kind: "container", name: plan.name.clone(), summary, value, body: None });
    let pk: Vec<&str> = plan.layer.packages.iter().map(String::as_str).collect();
    let shown = if pk.len() > 8 {
        format!("{} (+{} more)", pk[..8].join(" "), pk.len() - 8)
    } else if pk.is_empty() {
        "(base only)".to_string()
    } else {
        pk.join(" ")
    };
    let steps =
        if plan.layer.steps.is_empty() { String::new() } else { format!(", {} build steps", plan.layer.steps.len()) };
    out.push(Resource {
        kind: "layer",
        name: "packages".into(),
        summary: format!("packages: {shown}{steps}"),
        value: to_value(&plan.layer),
        body: None,
    });
    for secret in &plan.secrets {
        out.push(Resource {
            kind: "secret",
            name: secret.clone(),
            summary: secret.clone(),
            value: Value::Null,
            body: None,
        });
    }
    for (path, f) in &plan.files {
        out.push(Resource {
            kind: "file",
            name: path.clone(),
            summary: format!("{path} ({} {})", f.mode, f.owner),
            value: to_value(f),
            body: Some(f.content.redacted()),
        });
    }
    for (target, m) in &plan.mounts {
        let summary = match m.kind {
            MountKind::Volume => format!("{target} <- {}/volumes/{}", plan.name, m.source.as_deref().unwrap_or("")),
            MountKind::Bind => format!("{target} <- {} (host)", m.source.as_deref().unwrap_or("")),
            MountKind::Tmpfs => match m.size {
                Some(s) => format!("{target} (tmpfs {})", crate::spec::values::Size(s)),
                None => format!("{target} (tmpfs)"),
            },
        };
        let ro = if m.read_only { ", read-only" } else { "" };
        out.push(Resource {
            kind: "mount",
            name: target.clone(),
            summary: format!("{summary}{ro}"),
            value: to_value(m),
            body: None,
        });
    }
    let n = &plan.network;
    let mut parts: Vec<String> = Vec::new();
    match n.mode {
        crate::spec::types::NetMode::Routed => {
            parts.extend(n.ipv4.iter().map(|a| a.to_string()));
            parts.extend(n.ipv6.iter().map(|a| a.to_string()));
            if n.auto {
                parts.push("auto".into());
            }
            if n.nat {
                parts.push("nat".into());
            }
            if let Some(u) = &n.proxy_arp {
                parts.push(format!("proxy-arp on {u}"));
            }
            for p in &n.prefixes {
                parts.push(format!("route {p}"));
            }
            for p in &n.publish {
                parts.push(format!("publish {p}"));
            }
        }
        crate::spec::types::NetMode::None => parts.push("none (loopback only)".into()),
        crate::spec::types::NetMode::Host => parts.push("host (shares the host's network)".into()),
    }
    out.push(Resource {
        kind: "network",
        name: "eth0".into(),
        summary: format!("eth0 {}", parts.join(", ")),
        value: to_value(n),
        body: None,
    });
    for (name, s) in &plan.services {
        let mut extra = Vec::new();
        if let Some(r) = &s.ready {
            extra.push(match r {
                crate::spec::types::Ready::Tcp(p) => format!("ready on tcp/{p}"),
                crate::spec::types::Ready::Unix(p) => format!("ready on {p}"),
                crate::spec::types::Ready::Command(_) => "ready by command".into(),
            });
        }
        if !s.after.is_empty() {
            extra.push(format!("after {}", s.after.iter().cloned().collect::<Vec<_>>().join(", ")));
        }
        if !s.security.is_default() {
            extra.push(s.security.describe());
        }
        let extra = if extra.is_empty() { String::new() } else { format!(" ({})", extra.join("; ")) };
        out.push(Resource {
            kind: "service",
            name: name.clone(),
            summary: format!("{name}: {}{extra}", s.command.join(" ")),
            value: to_value(s),
            body: None,
        });
    }
    for (id, t) in &plan.init {
        let mut when = if t.after.is_empty() {
            "before services".to_string()
        } else {
            format!("after {}", t.after.iter().cloned().collect::<Vec<_>>().join(", "))
        };
        if !t.security.is_default() {
            when.push_str(&format!("; {}", t.security.describe()));
        }
        out.push(Resource {
            kind: "init",
            name: id.clone(),
            summary: format!("{id}: {} ({when})", t.command.join(" ")),
            value: to_value(t),
            body: t.stdin.as_ref().map(|s| s.redacted()),
        });
    }
    out
}

/// Changes from `old` (last applied, if any) to `new`.
pub fn diff(old: Option<&Plan>, new: &Plan) -> Changes {
    let after = resources(new);
    let before = old.map(resources).unwrap_or_default();
    let find = |list: &[Resource], kind: &str, name: &str| list.iter().position(|r| r.kind == kind && r.name == name);
    let mut changes = Vec::new();
    let existing = old.is_some();

    for r in &after {
        match find(&before, r.kind, &r.name) {
            None => changes.push(create(r, existing, r.kind == "file" && recreates(old, new, &r.name))),
            Some(i) if before[i].value != r.value => changes.push(update(&before[i], r, new)),
            Some(_) => {}
        }
    }
    for r in &before {
        if find(&after, r.kind, &r.name).is_none() {
            changes.push(delete(r));
        }
    }
    // Files changed by the same apply reload their service once.
    for c in &mut changes {
        c.effects.sort();
        c.effects.dedup();
    }
    Changes { container: new.name.clone(), new: old.is_none(), changes }
}

fn users_of(plan: &Plan, path: &str) -> Vec<Effect> {
    plan.services
        .iter()
        .filter(|(_, s)| s.uses.contains(path))
        .map(|(n, s)| match s.reload {
            Some(_) => Effect::ReloadService(n.clone()),
            None => Effect::RestartService(n.clone()),
        })
        .collect()
}

/// Whether adding the rendered file `path` recreates the running container. A file
/// is bound onto its path, so it needs a mount point: one can be made live only in a
/// writable volume or tmpfs the container has already (the deepest mount above the
/// path, unchanged by this apply); elsewhere it would have to exist in the read-only
/// root, which the plan cannot tell, so the container is recreated.
pub fn recreates(old: Option<&Plan>, new: &Plan, path: &str) -> bool {
    let Some(old) = old else { return true };
    let deepest = new.mounts.iter().rfind(|(t, _)| path.starts_with(&format!("{}/", t.trim_end_matches('/'))));
    !deepest.is_some_and(|(t, m)| {
        matches!(m.kind, MountKind::Volume | MountKind::Tmpfs) && !m.read_only && old.mounts.get(t) == Some(m)
    })
}

fn create(r: &Resource, existing: bool, recreate_for_file: bool) -> Change {
    let effects = match (r.kind, existing) {
        ("container", _) => vec![Effect::CreateContainer],
        ("layer", _) => vec![Effect::BuildLayer],
        ("secret", _) => vec![Effect::CreateSecret(r.name.clone())],
        ("mount", true) => vec![Effect::RecreateContainer],
        // Rendered files are bound into the container one by one: a new one is bound
        // live where a mount point can be made (see `recreates`).
        ("file", true) if recreate_for_file => vec![Effect::WriteFile(r.name.clone()), Effect::RecreateContainer],
        ("file", true) => vec![Effect::WriteFile(r.name.clone())],
        ("network", true) => vec![Effect::ReconfigureNetwork],
        ("service", true) => vec![Effect::StartService(r.name.clone())],
        ("init", true) => vec![Effect::RunInit(r.name.clone())],
        _ => Vec::new(),
    };
    Change {
        op: ChangeOp::Create,
        kind: r.kind,
        name: r.name.clone(),
        summary: r.summary.clone(),
        effects,
        fields: Vec::new(),
        diff: None,
        content: r.body.clone(),
    }
}

fn update(a: &Resource, b: &Resource, new: &Plan) -> Change {
    let (op, effects) = match b.kind {
        "container" => (ChangeOp::Replace, vec![Effect::RecreateContainer]),
        "layer" => (ChangeOp::Replace, vec![Effect::RebuildLayer, Effect::RecreateContainer]),
        "mount" => (ChangeOp::Replace, vec![Effect::RecreateContainer]),
        "network" => (ChangeOp::Update, vec![Effect::ReconfigureNetwork]),
        "file" => {
            let mut e = vec![Effect::WriteFile(b.name.clone())];
            e.extend(users_of(new, &b.name));
            (ChangeOp::Update, e)
        }
        "service" => (ChangeOp::Update, vec![Effect::RestartService(b.name.clone())]),
        "init" => (ChangeOp::Update, vec![Effect::RunInit(b.name.clone())]),
        _ => (ChangeOp::Update, Vec::new()),
    };
    let diff = match (&a.body, &b.body) {
        (Some(x), Some(y)) if x != y => Some(unified(x, y, &b.name)),
        _ => None,
    };
    let mut fields = Vec::new();
    field_changes("", &a.value, &b.value, &mut fields);
    if b.kind == "file" || b.kind == "init" {
        fields.retain(|f| !f.starts_with("content") && !f.starts_with("stdin"));
    }
    Change { op, kind: b.kind, name: b.name.clone(), summary: b.summary.clone(), effects, fields, diff, content: None }
}

fn delete(r: &Resource) -> Change {
    let effects = match r.kind {
        // A removed file's bind mount goes with the container it is in.
        "mount" | "container" | "layer" | "file" => vec![Effect::RecreateContainer],
        "service" => vec![Effect::StopService(r.name.clone())],
        "network" => vec![Effect::ReconfigureNetwork],
        _ => Vec::new(),
    };
    Change {
        op: ChangeOp::Delete,
        kind: r.kind,
        name: r.name.clone(),
        summary: r.summary.clone(),
        effects,
        fields: Vec::new(),
        diff: None,
        content: None,
    }
}

/// `a.b: x → y` for each differing leaf.
fn field_changes(prefix: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                field_changes(&p, x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null), out);
            }
        }
        _ if a != b => out.push(format!("{prefix}: {} → {}", short(a), short(b))),
        _ => {}
    }
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::Null => "(none)".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s
    }
}

/// A unified diff with three lines of context.
pub fn unified(a: &str, b: &str, name: &str) -> String {
    similar::TextDiff::from_lines(a, b)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a{name}"), &format!("b{name}"))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::compile::test_plan;

    const BASE: &str = "name = \"t\"\nbase = \"host\"\n[[mounts]]\ntarget = \"/srv/data\"\ntype = \"volume\"\n\
        [[mounts]]\ntarget = \"/srv/ro\"\ntype = \"volume\"\nread_only = true\n";

    fn with_file(extra: &str, path: &str) -> Plan {
        test_plan(&format!("{BASE}{extra}[[files]]\npath = \"{path}\"\ncontent = \"x\"\n"))
    }

    #[test]
    fn a_new_file_recreates_only_outside_a_writable_volume_or_tmpfs_it_had() {
        let old = test_plan(BASE);
        assert!(!recreates(Some(&old), &with_file("", "/srv/data/a/b.conf"), "/srv/data/a/b.conf"));
        assert!(recreates(Some(&old), &with_file("", "/srv/other.conf"), "/srv/other.conf"));
        assert!(recreates(Some(&old), &with_file("", "/srv/ro/x"), "/srv/ro/x"));
        assert!(recreates(None, &with_file("", "/srv/data/x"), "/srv/data/x"));
        // A tmpfs added by the same apply recreates anyway (its mount is new).
        let tmp = "[[mounts]]\ntarget = \"/srv/tmp\"\ntype = \"tmpfs\"\n";
        assert!(recreates(Some(&old), &with_file(tmp, "/srv/tmp/x"), "/srv/tmp/x"));
        let new = with_file("", "/srv/data/x");
        let effects: Vec<Effect> = diff(Some(&old), &new).changes.into_iter().flat_map(|c| c.effects).collect();
        assert_eq!(effects, [Effect::WriteFile("/srv/data/x".into())]);
    }
}
