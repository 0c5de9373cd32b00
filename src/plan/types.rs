//! The plan: the resolved desired state of one container.
//!
//! Invariant: a plan is plain data with a canonical order (sorted maps and sets), so
//! the same spec and state always serialize to the same bytes. It holds secret names,
//! never secret values. It is what `state.json` stores as "last applied".

use super::text::Text;
use crate::spec::types::{MountKind, NetMode, Ready, Restart};
use crate::spec::values::Proto;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Version of the plan's JSON format.
pub const PLAN_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub format: u32,
    pub name: String,
    pub hostname: String,
    /// The root filesystem: base, packages and build steps.
    pub layer: Layer,
    /// Files rendered into the container, by container path.
    #[serde(default)]
    pub files: BTreeMap<String, FileRes>,
    /// Mounts, by target path.
    #[serde(default)]
    pub mounts: BTreeMap<String, MountRes>,
    /// Device nodes bound from the host beyond the minimal /dev (e.g. /dev/net/tun).
    #[serde(default)]
    pub devices: BTreeSet<String>,
    pub network: NetworkRes,
    /// Supervised programs, by name.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceRes>,
    /// Idempotent tasks run on every start/apply, by id.
    #[serde(default)]
    pub init: BTreeMap<String, InitTask>,
    /// Ports the services listen on ("tcp/80" → owner), to detect clashes.
    #[serde(default)]
    pub ports: BTreeMap<String, String>,
    /// Names of the secrets the plan uses.
    #[serde(default)]
    pub secrets: BTreeSet<String>,
    #[serde(default)]
    pub limits: LimitsRes,
    /// The spec opted out of the user namespace: the container's root is host root.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_root: bool,
}

/// What the root filesystem is built from; any change rebuilds the package layer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub base: String,
    /// Debian mirror for the base and packages (default: deb.debian.org).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<String>,
    /// Debian architecture (default: the host's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(default)]
    pub packages: BTreeSet<String>,
    #[serde(default)]
    pub steps: Vec<BuildStep>,
}

/// One build step of the package layer, run in the layer's chroot at build time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildStep {
    /// Run a program (argv) in the layer.
    Run(Vec<String>),
    /// Download a file and verify its sha256 (or copy a local file), then unpack a
    /// tarball into `dest`.
    Fetch(Fetch),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fetch {
    pub url: String,
    pub sha256: String,
    pub dest: String,
    /// Leading path components to strip when unpacking.
    #[serde(default)]
    pub strip: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRes {
    pub content: Text,
    #[serde(default = "default_mode")]
    pub mode: String,
    #[serde(default = "default_owner")]
    pub owner: String,
    /// Which module or spec entry made it.
    #[serde(default)]
    pub origin: String,
}

pub fn default_mode() -> String {
    "0644".into()
}
pub fn default_owner() -> String {
    "root:root".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountRes {
    #[serde(rename = "type")]
    pub kind: MountKind,
    /// Volume name (relative to the container's volume folder) or host path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Tmpfs size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default)]
    pub read_only: bool,
    /// Owner given to a new volume or tmpfs root ("user:group").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Mode of a new volume or tmpfs root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default)]
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkRes {
    pub mode: NetMode,
    /// "a.b.c.d/32" once resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
    /// True when the address came from the pool ("auto").
    #[serde(default)]
    pub auto: bool,
    #[serde(default)]
    pub nat: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_arp: Option<String>,
    #[serde(default)]
    pub prefixes: BTreeSet<String>,
    #[serde(default)]
    pub publish: BTreeSet<String>,
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// `net.*` kernel settings of the container's network namespace (set by modules,
    /// e.g. forwarding for nat64), applied when the network is configured.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
}

/// How a running program takes a changed config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reload {
    Signal(String),
    Command(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRes {
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    #[serde(default)]
    pub restart: Restart,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<Ready>,
    /// Services (and init tasks) that must be ready/done first.
    #[serde(default)]
    pub after: BTreeSet<String>,
    /// Without a reload, a changed file restarts the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<Reload>,
    /// Files whose change reloads or restarts this service.
    #[serde(default)]
    pub uses: BTreeSet<String>,
    #[serde(default)]
    pub origin: String,
}

/// An idempotent task, run at every start and apply (unless `creates` exists).
///
/// Ordering guarantee: tasks with an empty `after` run before any service starts;
/// the others run once all their `after` services are ready. Tasks that become due
/// at the same moment run one at a time in id order, so modules order dependent
/// tasks by naming them (`tinc-key` before `tinc-key-public`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitTask {
    pub command: Vec<String>,
    /// Fed to the command's standard input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Skip when this path exists in the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creates: Option<String>,
    /// Services that must be ready before the task runs (empty: before any service).
    #[serde(default)]
    pub after: BTreeSet<String>,
    #[serde(default)]
    pub origin: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsRes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_weight: Option<u32>,
}

impl NetworkRes {
    /// The container's IPv4 address without its prefix length ("a.b.c.d").
    pub fn ipv4_addr(&self) -> Option<&str> {
        self.ipv4.as_deref().and_then(|a| a.split('/').next())
    }
    /// The container's IPv6 address without its prefix length.
    pub fn ipv6_addr(&self) -> Option<&str> {
        self.ipv6.as_deref().and_then(|a| a.split('/').next())
    }
}

/// Key of a listening port in `Plan::ports`.
pub fn port_key(proto: Proto, port: u16) -> String {
    format!("{proto}/{port}")
}

impl ServiceRes {
    /// A service running `argv` as root, restarted on failure.
    pub fn new<S: AsRef<str>>(argv: &[S]) -> Self {
        ServiceRes {
            command: argv.iter().map(|s| s.as_ref().to_string()).collect(),
            user: None,
            env: BTreeMap::new(),
            workdir: None,
            restart: Restart::OnFailure,
            ready: None,
            after: BTreeSet::new(),
            reload: None,
            uses: BTreeSet::new(),
            origin: String::new(),
        }
    }
    pub fn user(mut self, u: &str) -> Self {
        self.user = Some(u.to_string());
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.insert(k.to_string(), v.to_string());
        self
    }
    pub fn ready_tcp(mut self, port: u16) -> Self {
        self.ready = Some(Ready::Tcp(crate::spec::values::Port(port)));
        self
    }
    pub fn ready_unix(mut self, path: &str) -> Self {
        self.ready = Some(Ready::Unix(crate::spec::values::AbsPath(path.to_string())));
        self
    }
    pub fn ready_command<S: AsRef<str>>(mut self, argv: &[S]) -> Self {
        self.ready = Some(Ready::Command(argv.iter().map(|s| s.as_ref().to_string()).collect()));
        self
    }
    pub fn after(mut self, name: &str) -> Self {
        self.after.insert(name.to_string());
        self
    }
    pub fn reload_signal(mut self, sig: &str) -> Self {
        self.reload = Some(Reload::Signal(sig.to_string()));
        self
    }
    pub fn reload_command<S: AsRef<str>>(mut self, argv: &[S]) -> Self {
        self.reload = Some(Reload::Command(argv.iter().map(|s| s.as_ref().to_string()).collect()));
        self
    }
    /// A file whose change reloads (or restarts) this service.
    pub fn uses(mut self, path: &str) -> Self {
        self.uses.insert(path.to_string());
        self
    }
}

impl InitTask {
    pub fn new<S: AsRef<str>>(argv: &[S]) -> Self {
        InitTask {
            command: argv.iter().map(|s| s.as_ref().to_string()).collect(),
            stdin: None,
            user: None,
            creates: None,
            after: BTreeSet::new(),
            origin: String::new(),
        }
    }
    pub fn stdin(mut self, t: impl Into<Text>) -> Self {
        self.stdin = Some(t.into());
        self
    }
    pub fn user(mut self, u: &str) -> Self {
        self.user = Some(u.to_string());
        self
    }
    pub fn creates(mut self, path: &str) -> Self {
        self.creates = Some(path.to_string());
        self
    }
    /// Run once `service` is ready.
    pub fn after(mut self, service: &str) -> Self {
        self.after.insert(service.to_string());
        self
    }
}
