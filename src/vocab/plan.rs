//! The plan: the resolved desired state of one container.
//!
//! Invariant: a plan is plain data with a canonical order (sorted maps and sets), so
//! the same spec and state always serialize to the same bytes. It holds secret names,
//! never secret values. It is what `state.json` stores as "last applied".
//!
//! Invariant: typed. Every value with a rule (modes, owners, mount sources, devices,
//! addresses and networks, port mappings, signals, paths) is a checked type of
//! [`super::values`] whose serde form is the text the plan always had, so a plan that
//! deserializes holds only valid values: a hook's `on_plan` result is read with the
//! spec's deserializer and a bad value fails there, at plan time, at the hook. Rules
//! across fields (a volume's source is a volume path, a bind's a host path) are
//! [`Plan::problems`]. The runtime and exec take these values and never parse again.

use super::kinds::{MountKind, NetMode, Ready, Restart};
use super::path::Path;
use super::text::Text;
use super::values::{
    AbsPath, Arch, Base, Cidr, DeviceNode, IfaceName, IpAddress, Ipv4Host, Ipv6Host, Mirror, Mode, Owner, Proto,
    Publish, ShaSum, SignalName, SourcePath,
};
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
    pub devices: BTreeSet<DeviceNode>,
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
    /// Those of `ports` bound to the container's loopback only (Caddy's admin API, a
    /// MariaDB on 127.0.0.1): nothing outside the container reaches them.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub loopback_ports: BTreeSet<String>,
    /// Names of the secrets the plan uses.
    #[serde(default)]
    pub secrets: BTreeSet<String>,
    #[serde(default)]
    pub limits: LimitsRes,
    /// The container's own containment beyond the defaults: what `exec` and `shell`
    /// get, already folded into every service and init task.
    #[serde(default, skip_serializing_if = "Security::is_default")]
    pub security: Security,
    /// The spec opted out of the user namespace: the container's root is host root.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_root: bool,
    /// The container's restart policy (spec `restart`): what `start --wait` (the
    /// systemd template unit) does when PID 1 dies while it is to run.
    #[serde(default, skip_serializing_if = "Restart::is_default")]
    pub restart: Restart,
}

/// What the root filesystem is built from; any change rebuilds the package layer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub base: Base,
    /// Debian mirror for the base and packages, `<suite>` and `<suite>-updates`
    /// (default: deb.debian.org/debian).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Mirror>,
    /// Debian security mirror, `<suite>-security` (default:
    /// deb.debian.org/debian-security).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_mirror: Option<Mirror>,
    /// Debian architecture (default: the host's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<Arch>,
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
    pub sha256: ShaSum,
    pub dest: AbsPath,
    /// Leading path components to strip when unpacking.
    #[serde(default)]
    pub strip: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRes {
    pub content: Text,
    #[serde(default = "default_mode")]
    pub mode: Mode,
    #[serde(default = "default_owner")]
    pub owner: Owner,
    /// Which module or spec entry made it.
    #[serde(default)]
    pub origin: String,
}

pub fn default_mode() -> Mode {
    Mode(0o644)
}
pub fn default_owner() -> Owner {
    Owner::root()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountRes {
    #[serde(rename = "type")]
    pub kind: MountKind,
    /// Volume name (relative to the container's volume folder) or host path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourcePath>,
    /// Tmpfs size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default)]
    pub read_only: bool,
    /// Owner given to a new volume or tmpfs root ("user:group").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// Mode of a new volume or tmpfs root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkRes {
    pub mode: NetMode,
    /// "a.b.c.d/32" once resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Host>,
    /// "addr/128" once resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Host>,
    /// True when the address came from the pool ("auto").
    #[serde(default)]
    pub auto: bool,
    #[serde(default)]
    pub nat: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_arp: Option<IfaceName>,
    #[serde(default)]
    pub prefixes: BTreeSet<Cidr>,
    #[serde(default)]
    pub publish: BTreeSet<Publish>,
    #[serde(default)]
    pub nameservers: Vec<IpAddress>,
    /// `net.*` kernel settings of the container's network namespace (set by modules,
    /// e.g. forwarding for nat64), applied when the network is configured.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
}

/// How a running program takes a changed config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reload {
    Signal(SignalName),
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
    pub workdir: Option<AbsPath>,
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
    #[serde(default, skip_serializing_if = "Security::is_default")]
    pub security: Security,
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
    pub creates: Option<AbsPath>,
    /// Services that must be ready before the task runs (empty: before any service).
    #[serde(default)]
    pub after: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "Security::is_default")]
    pub security: Security,
    #[serde(default)]
    pub origin: String,
}

/// Containment of a process beyond the defaults (Podman's eleven capabilities,
/// no_new_privs, the default seccomp filter), in canonical form: `cap_add` holds only
/// capabilities outside the default set, `cap_drop` only ones inside it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Security {
    /// Capabilities beyond the default set ("NET_ADMIN").
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub cap_add: BTreeSet<String>,
    /// Capabilities of the default set taken away.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub cap_drop: BTreeSet<String>,
    /// System calls the default seccomp filter lets through for this process.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub seccomp_allow: BTreeSet<String>,
    /// False: the process may gain privileges at exec (setuid files, file capabilities).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub no_new_privs: bool,
}

fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}

impl Default for Security {
    fn default() -> Self {
        Security {
            cap_add: BTreeSet::new(),
            cap_drop: BTreeSet::new(),
            seccomp_allow: BTreeSet::new(),
            no_new_privs: true,
        }
    }
}

impl Security {
    pub fn is_default(&self) -> bool {
        self == &Security::default()
    }

    /// The capability set (bit n = capability n): the default set, plus `cap_add`,
    /// minus `cap_drop`.
    pub fn caps(&self) -> u64 {
        let add = crate::vocab::caps::set_of(self.cap_add.iter().map(String::as_str));
        let drop = crate::vocab::caps::set_of(self.cap_drop.iter().map(String::as_str));
        (crate::vocab::caps::default_set() | add) & !drop
    }

    /// `outer` (the container's) under this process's own settings: what the process
    /// adds or drops itself wins; calls allowed and a no_new_privs opt-out add up.
    /// The result is canonical.
    pub fn within(&self, outer: &Security) -> Security {
        let add: BTreeSet<String> =
            self.cap_add.union(&outer.cap_add.difference(&self.cap_drop).cloned().collect()).cloned().collect();
        let drop: BTreeSet<String> =
            self.cap_drop.union(&outer.cap_drop.difference(&self.cap_add).cloned().collect()).cloned().collect();
        let merged = Security {
            cap_add: add,
            cap_drop: drop,
            seccomp_allow: self.seccomp_allow.union(&outer.seccomp_allow).cloned().collect(),
            no_new_privs: self.no_new_privs && outer.no_new_privs,
        };
        merged.canonical()
    }

    /// The same set written as the difference from the default set.
    pub fn canonical(&self) -> Security {
        let set = self.caps();
        let default = crate::vocab::caps::default_set();
        let names = |s: u64| crate::vocab::caps::names(s).into_iter().map(str::to_string).collect();
        Security {
            cap_add: names(set & !default),
            cap_drop: names(default & !set),
            seccomp_allow: self.seccomp_allow.clone(),
            no_new_privs: self.no_new_privs,
        }
    }

    /// One line for `plan` and `status`: "capabilities +NET_ADMIN -CHOWN; seccomp
    /// allows ptrace; no_new_privs off". Empty for the defaults.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.cap_add.is_empty() || !self.cap_drop.is_empty() {
            let caps: Vec<String> = self
                .cap_add
                .iter()
                .map(|c| format!("+{c}"))
                .chain(self.cap_drop.iter().map(|c| format!("-{c}")))
                .collect();
            parts.push(format!("capabilities {}", caps.join(" ")));
        }
        if !self.seccomp_allow.is_empty() {
            let calls: Vec<&str> = self.seccomp_allow.iter().map(String::as_str).collect();
            parts.push(format!("seccomp allows {}", calls.join(" ")));
        }
        if !self.no_new_privs {
            parts.push("no_new_privs off".to_string());
        }
        parts.join("; ")
    }
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

impl Plan {
    /// What the container's PID 1 keeps: every capability some process of the plan
    /// may have (the default set, the container's additions and every process's), and
    /// CAP_SYS_ADMIN when a process opts out of no_new_privs (a filter is installed
    /// without no_new_privs only with it); the seccomp calls any process is allowed.
    /// PID 1 runs without no_new_privs so that such an opt-out stays possible.
    pub fn pid1_security(&self) -> Security {
        let procs = self.services.values().map(|s| &s.security).chain(self.init.values().map(|t| &t.security));
        let mut caps = self.security.caps() | crate::vocab::caps::default_set();
        let mut allow = self.security.seccomp_allow.clone();
        let mut nnp = self.security.no_new_privs;
        for s in procs {
            caps |= s.caps();
            allow.extend(s.seccomp_allow.iter().cloned());
            nnp &= s.no_new_privs;
        }
        if !nnp {
            caps |= 1 << crate::vocab::caps::SYS_ADMIN;
        }
        let default = crate::vocab::caps::default_set();
        Security {
            cap_add: crate::vocab::caps::names(caps & !default).into_iter().map(str::to_string).collect(),
            cap_drop: BTreeSet::new(),
            seccomp_allow: allow,
            no_new_privs: false,
        }
    }
}

impl NetworkRes {
    /// The container's IPv4 address without its prefix length.
    pub fn ipv4_addr(&self) -> Option<std::net::Ipv4Addr> {
        self.ipv4.as_ref().map(|a| a.0)
    }
    /// The container's IPv6 address without its prefix length.
    pub fn ipv6_addr(&self) -> Option<std::net::Ipv6Addr> {
        self.ipv6.as_ref().map(|a| a.0)
    }
}

impl Plan {
    /// What is wrong across fields, where no single value's type can tell: a mount's
    /// source must be of its kind's form (a volume's a relative path under the
    /// volume folder, a bind's an absolute host path, a tmpfs none). Paths are inside
    /// the plan (`mounts./srv.source`). Empty for a plan from a valid spec.
    pub fn problems(&self) -> Vec<(Path, String)> {
        let mut out = Vec::new();
        for (target, m) in &self.mounts {
            let at = Path::root().key("mounts").key(target);
            let src = m.source.as_ref();
            let wrong = match (m.kind, src) {
                (MountKind::Volume, Some(s)) if s.is_host() => {
                    Some(format!("volume source `{s}` is not a relative path under the container's volume folder"))
                }
                (MountKind::Bind, None) => {
                    Some(format!("bind mount {target} needs a `source` (an absolute host path)"))
                }
                (MountKind::Bind, Some(s)) if !s.is_host() => {
                    Some(format!("bind source `{s}` must be an absolute host path without `..`"))
                }
                (MountKind::Tmpfs, Some(_)) => Some("a tmpfs has no `source`".to_string()),
                _ => None,
            };
            out.extend(wrong.map(|w| (if src.is_some() { at.key("source") } else { at.clone() }, w)));
            if !target.starts_with('/') || target.split('/').any(|c| c == "..") {
                out.push((at, format!("mount target `{target}` must be an absolute path without `..`")));
            }
        }
        for path in self.files.keys() {
            if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
                out.push((
                    Path::root().key("files").key(path),
                    format!("file path `{path}` must be an absolute path without `..`"),
                ));
            }
        }
        out
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
            security: Security::default(),
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
        self.ready = Some(Ready::Tcp(super::values::Port(port)));
        self
    }
    pub fn ready_unix(mut self, path: &str) -> Self {
        self.ready = Some(Ready::Unix(AbsPath(path.to_string())));
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
    pub fn reload_signal(mut self, sig: SignalName) -> Self {
        self.reload = Some(Reload::Signal(sig));
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
    /// A capability the service's daemon needs beyond the default set.
    pub fn cap_add(mut self, cap: &str) -> Self {
        self.security.cap_add.insert(cap.to_string());
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
            security: Security::default(),
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
    /// Skip the task when `path` (absolute, a module's constant) exists.
    pub fn creates(mut self, path: &str) -> Self {
        self.creates = Some(AbsPath(path.to_string()));
        self
    }
    /// Run once `service` is ready.
    pub fn after(mut self, service: &str) -> Self {
        self.after.insert(service.to_string());
        self
    }
    /// A capability the task's program needs beyond the default set.
    pub fn cap_add(mut self, cap: &str) -> Self {
        self.security.cap_add.insert(cap.to_string());
        self
    }
}
