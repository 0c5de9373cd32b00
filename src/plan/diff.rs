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
    /// A new value for an existing secret, asked for by `container secret regenerate`.
    RegenerateSecret(String),
    ReconfigureNetwork,
    UpdateRules,
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
            Effect::RegenerateSecret(_) => f.write_str("generate a new value (stored 0600, never shown)"),
            Effect::ReconfigureNetwork => f.write_str("reconfigure network"),
            Effect::UpdateRules => f.write_str("update nftables rules"),
            Effect::RecreateContainer => f.write_str("recreate container"),
            Effect::BuildLayer => f.write_str("build layer"),
            Effect::RebuildLayer => f.write_str("rebuild layer"),
            Effect::CreateContainer => f.write_str("create container"),
        }
    }
}

/// The kinds of resource a plan is cut into. Serialized as the lowercase words the
/// plan's JSON always had (`"file"`, `"service"`, …); a match on it is exhaustive, so
/// a kind without a decided effect is a compile error, not a silent "no effect".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    Container,
    Layer,
    Secret,
    File,
    Mount,
    Network,
    Service,
    Init,
    /// A host route to the container's addresses or prefixes.
    Route,
    /// A proxy neighbour (NDP) entry on the host's uplink.
    Neighbour,
    /// A host sysctl the network sets.
    Sysctl,
    /// Rules of the container in the tool's nftables table.
    Nft,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Container => "container",
            ResourceKind::Layer => "layer",
            ResourceKind::Secret => "secret",
            ResourceKind::File => "file",
            ResourceKind::Mount => "mount",
            ResourceKind::Network => "network",
            ResourceKind::Service => "service",
            ResourceKind::Init => "init",
            ResourceKind::Route => "route",
            ResourceKind::Neighbour => "neighbour",
            ResourceKind::Sysctl => "sysctl",
            ResourceKind::Nft => "nft",
        }
    }
}

impl std::fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so `{:<9}` aligns the listing.
        f.pad(self.as_str())
    }
}

/// One resource of a plan, as diffed and shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub kind: ResourceKind,
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
    pub kind: ResourceKind,
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
    /// What runs differs from what was recorded (`runtime::observe`), each with its
    /// repair; empty unless the caller observed the container.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<super::actions::Drift>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.drift.is_empty()
    }
    /// Whether carrying the changes out recreates the container.
    pub fn recreates(&self) -> bool {
        self.changes.iter().flat_map(|c| &c.effects).any(|e| {
            matches!(e, Effect::CreateContainer | Effect::RecreateContainer | Effect::BuildLayer | Effect::RebuildLayer)
        })
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
    out.push(Resource { kind: ResourceKind::Container, name: plan.name.clone(), summary, value, body: None });
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
        kind: ResourceKind::Layer,
        name: "packages".into(),
        summary: format!("packages: {shown}{steps}"),
        value: to_value(&plan.layer),
        body: None,
    });
    for secret in &plan.secrets {
        out.push(Resource {
            kind: ResourceKind::Secret,
            name: secret.clone(),
            summary: secret.clone(),
            value: Value::Null,
            body: None,
        });
    }
    for (path, f) in &plan.files {
        out.push(Resource {
            kind: ResourceKind::File,
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
            kind: ResourceKind::Mount,
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
        kind: ResourceKind::Network,
        name: "eth0".into(),
        summary: format!("eth0 {}", parts.join(", ")),
        value: to_value(n),
        body: None,
    });
    for h in super::compile::host_effects(n) {
        let value = json!({ "summary": h.summary });
        out.push(Resource { kind: h.kind, name: h.name, summary: h.summary, value, body: None });
    }
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
            kind: ResourceKind::Service,
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
            kind: ResourceKind::Init,
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
    let find =
        |list: &[Resource], kind: ResourceKind, name: &str| list.iter().position(|r| r.kind == kind && r.name == name);
    let mut changes = Vec::new();
    let existing = old.is_some();

    for r in &after {
        match find(&before, r.kind, &r.name) {
            None => {
                changes.push(create(r, existing, r.kind == ResourceKind::File && file_recreates(old, new, &r.name)))
            }
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
    let mut out = Changes { container: new.name.clone(), new: old.is_none(), changes, drift: Vec::new() };
    // A recreate destroys the running container and adds a new one: shown (and
    // counted) as the container's replacement, naming what made it necessary.
    let replaced = out.changes.iter().any(|c| c.kind == ResourceKind::Container && c.op == ChangeOp::Replace);
    if existing && out.recreates() && !replaced {
        let why: Vec<String> = out
            .changes
            .iter()
            .filter(|c| c.effects.iter().any(|e| matches!(e, Effect::RecreateContainer | Effect::RebuildLayer)))
            .map(|c| format!("{} {} {}", c.op.symbol(), c.kind, c.name))
            .collect();
        let summary = after.first().map(|r| r.summary.clone()).unwrap_or_default();
        out.changes.insert(
            0,
            Change {
                op: ChangeOp::Replace,
                kind: ResourceKind::Container,
                name: new.name.clone(),
                summary,
                effects: vec![Effect::RecreateContainer],
                fields: vec![format!("recreated for: {}", why.join(", "))],
                diff: None,
                content: None,
            },
        );
    }
    out
}

/// Which changes recreate a running container: the one rule. The container's own
/// settings (fixed when PID 1 starts), its layer and its mounts cannot change under a
/// running container; nor can a rendered file be removed (each is bound into the
/// container on its own); a new one is decided by [`file_recreates`], a changed one
/// is swapped live. Everything else is changed live.
pub fn recreates(kind: ResourceKind, op: ChangeOp) -> bool {
    use ResourceKind as K;
    match kind {
        K::Container | K::Layer | K::Mount => true,
        // A new file: decided per path by `file_recreates` (live beneath a volume or
        // tmpfs); a removed one still recreates.
        K::File => matches!(op, ChangeOp::Delete | ChangeOp::Replace),
        K::Secret | K::Network | K::Service | K::Init | K::Route | K::Neighbour | K::Sysctl | K::Nft => false,
    }
}

pub(crate) fn users_of(plan: &Plan, path: &str) -> Vec<Effect> {
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
pub fn file_recreates(old: Option<&Plan>, new: &Plan, path: &str) -> bool {
    let Some(old) = old else { return true };
    let deepest = new.mounts.iter().rfind(|(t, _)| path.starts_with(&format!("{}/", t.trim_end_matches('/'))));
    !deepest.is_some_and(|(t, m)| {
        matches!(m.kind, MountKind::Volume | MountKind::Tmpfs) && !m.read_only && old.mounts.get(t) == Some(m)
    })
}

fn create(r: &Resource, existing: bool, recreate_for_file: bool) -> Change {
    use ResourceKind as K;
    let mut effects = match (r.kind, existing) {
        (K::Container, _) => vec![Effect::CreateContainer],
        (K::Layer, _) => vec![Effect::BuildLayer],
        (K::Secret, _) => vec![Effect::CreateSecret(r.name.clone())],
        // A new container: everything else comes with its creation.
        (_, false) => Vec::new(),
        (K::Mount, true) => Vec::new(),
        // Rendered files are bound into the container one by one: a new one is bound
        // live where a mount point can be made (see `file_recreates`).
        (K::File, true) if recreate_for_file => vec![Effect::WriteFile(r.name.clone()), Effect::RecreateContainer],
        (K::File, true) => vec![Effect::WriteFile(r.name.clone())],
        (K::Network | K::Route | K::Neighbour | K::Sysctl, true) => vec![Effect::ReconfigureNetwork],
        (K::Nft, true) => vec![Effect::UpdateRules],
        (K::Service, true) => vec![Effect::StartService(r.name.clone())],
        (K::Init, true) => vec![Effect::RunInit(r.name.clone())],
    };
    if existing && recreates(r.kind, ChangeOp::Create) && !matches!(r.kind, K::Container | K::Layer) {
        effects.push(Effect::RecreateContainer);
    }
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
    use ResourceKind as K;
    let mut effects = match b.kind {
        K::Container | K::Mount => Vec::new(),
        K::Layer => vec![Effect::RebuildLayer],
        K::Network | K::Route | K::Neighbour | K::Sysctl => vec![Effect::ReconfigureNetwork],
        K::Nft => vec![Effect::UpdateRules],
        K::File => {
            let mut e = vec![Effect::WriteFile(b.name.clone())];
            e.extend(users_of(new, &b.name));
            e
        }
        K::Service => vec![Effect::RestartService(b.name.clone())],
        K::Init => vec![Effect::RunInit(b.name.clone())],
        // A secret's value is never compared (its resource is its name).
        K::Secret => Vec::new(),
    };
    let op = if recreates(b.kind, ChangeOp::Update) {
        effects.push(Effect::RecreateContainer);
        ChangeOp::Replace
    } else {
        ChangeOp::Update
    };
    let diff = match (&a.body, &b.body) {
        (Some(x), Some(y)) if x != y => Some(unified(x, y, &b.name)),
        _ => None,
    };
    let mut fields = Vec::new();
    field_changes("", &a.value, &b.value, &mut fields);
    if matches!(b.kind, K::File | K::Init) {
        fields.retain(|f| !f.starts_with("content") && !f.starts_with("stdin"));
    }
    Change { op, kind: b.kind, name: b.name.clone(), summary: b.summary.clone(), effects, fields, diff, content: None }
}

fn delete(r: &Resource) -> Change {
    use ResourceKind as K;
    let mut effects = match r.kind {
        K::Service => vec![Effect::StopService(r.name.clone())],
        K::Network | K::Route | K::Neighbour | K::Sysctl => vec![Effect::ReconfigureNetwork],
        K::Nft => vec![Effect::UpdateRules],
        // A removed secret's file stays (the data may depend on it); init tasks
        // just stop running; the others go with the container (below).
        K::Secret | K::Init | K::Mount | K::Container | K::Layer | K::File => Vec::new(),
    };
    // A removed file's bind mount goes with the container it is in.
    if recreates(r.kind, ChangeOp::Delete) {
        effects.push(Effect::RecreateContainer);
    }
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
        assert!(!file_recreates(Some(&old), &with_file("", "/srv/data/a/b.conf"), "/srv/data/a/b.conf"));
        assert!(file_recreates(Some(&old), &with_file("", "/srv/other.conf"), "/srv/other.conf"));
        assert!(file_recreates(Some(&old), &with_file("", "/srv/ro/x"), "/srv/ro/x"));
        assert!(file_recreates(None, &with_file("", "/srv/data/x"), "/srv/data/x"));
        // A tmpfs added by the same apply recreates anyway (its mount is new).
        let tmp = "[[mounts]]\ntarget = \"/srv/tmp\"\ntype = \"tmpfs\"\n";
        assert!(file_recreates(Some(&old), &with_file(tmp, "/srv/tmp/x"), "/srv/tmp/x"));
        let new = with_file("", "/srv/data/x");
        let effects: Vec<Effect> = diff(Some(&old), &new).changes.into_iter().flat_map(|c| c.effects).collect();
        assert_eq!(effects, [Effect::WriteFile("/srv/data/x".into())]);
    }
}
