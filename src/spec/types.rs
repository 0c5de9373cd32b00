//! The spec model: what a user writes, in TOML or YAML.
//!
//! Invariant: these types describe the document only. Doc comments here become the
//! JSON schema's descriptions and `container explain` text, so they are written for
//! the user. No defaults that depend on the host are resolved here.

use super::values::*;
use crate::modules::Services;
pub use crate::vocab::kinds::{MountKind, NetMode, Ready, Restart};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A service container: its base system, packages, files, mounts, network and services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "container spec")]
pub struct Spec {
    /// Container name: 1-31 lowercase letters, digits and `-`.
    pub name: Name,
    /// Base system: "host" (the host's /usr, read-only; no download) or "debian:<suite>"
    /// (debootstrap, cached) of a suite the tool knows: "debian:trixie" (Debian 13, the
    /// default) or "debian:bookworm" (Debian 12). Modules render the configuration of
    /// the suite's package versions (e.g. PHP 8.4 on trixie, 8.2 on bookworm); with
    /// "host" they assume the default suite.
    #[serde(default = "default_base")]
    pub base: Base,
    /// Debian mirror the base and packages come from, `<suite>` and
    /// `<suite>-updates` (default "http://deb.debian.org/debian"). Ignored for
    /// `base = "host"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<crate::spec::values::Mirror>,
    /// Debian security mirror, `<suite>-security` (default
    /// "http://deb.debian.org/debian-security"). Ignored for `base = "host"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_mirror: Option<crate::spec::values::Mirror>,
    /// Debian architecture of the root, e.g. "amd64" (default: the host's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<crate::spec::values::Arch>,
    /// Host name inside the container; defaults to the container name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Extra Debian packages installed into the container's package layer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    /// Extra files placed in the container (read-only root; rewritten live on change).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileSpec>,
    /// Writable or extra mounts: volumes, host binds and tmpfs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountSpec>,
    /// What happens when the container's PID 1 dies while it is to run, under
    /// `container@NAME.service` (`container start --wait NAME`): "on-failure"
    /// (default) and "always" make systemd start it again; "no" leaves it crashed
    /// (`status` says how it ended). "always" also makes `container start --all`
    /// start a crashed container that `container disable` set to stay stopped.
    /// Changing it restarts nothing.
    #[serde(default, skip_serializing_if = "Restart::is_default")]
    pub restart: Restart,
    /// Network of the container.
    #[serde(default)]
    pub network: NetworkSpec,
    /// Service modules, each with typed settings (mysql, caddy, php, ...).
    #[serde(default)]
    pub services: Services,
    /// Generic supervised programs, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub processes: BTreeMap<String, ProcessSpec>,
    /// Rhai scripts run at plan time to compute what a declaration cannot hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookSpec>,
    /// Free-form values for hooks (`spec.vars` in a script).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub vars: BTreeMap<String, serde_json::Value>,
    /// Resource limits (cgroups, where the controller exists).
    #[serde(default)]
    pub limits: Limits,
    /// Containment of the container and of every process in it (services, init
    /// tasks, `exec`, `shell`) beyond the defaults: the user namespace, and
    /// capabilities, seccomp and no_new_privs that a process can change again under
    /// its own `security`.
    #[serde(default, skip_serializing_if = "ContainerSecuritySpec::is_empty")]
    pub security: ContainerSecuritySpec,
}

/// Isolation settings of the whole container. The defaults are the safe ones; each
/// opt-out is shown by `plan` and `status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContainerSecuritySpec {
    /// Run the container in its own user namespace (default true): its root and its
    /// users are unprivileged host uids from a range of 65536 of its own, and the
    /// shared layers and host folders are seen through idmapped mounts. `false`
    /// makes the container's root the host's root: only for a container that truly
    /// needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_namespace: Option<bool>,
    /// Capabilities added to the default set of every process, e.g. ["NET_ADMIN"].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<Capability>,
    /// Capabilities of the default set taken away from every process, e.g. ["CHOWN"].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<Capability>,
    /// System calls the default seccomp filter refuses but this lets through for every
    /// process, e.g. ["ptrace"]. A capability in `cap_add` already brings its own calls
    /// (SYS_PTRACE: ptrace; SYS_ADMIN: mount, unshare, ...), as in Docker.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seccomp_allow: Vec<Syscall>,
    /// `false` turns off `no_new_privs`, so a process may gain privileges through
    /// execve: a setuid file or one with file capabilities on a mount that honours
    /// them (the container's own mounts are all nosuid, so su and sudo still do not
    /// gain anything there). Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_new_privs: Option<bool>,
}

impl ContainerSecuritySpec {
    pub fn is_empty(&self) -> bool {
        self == &ContainerSecuritySpec::default()
    }

    /// Whether the container gets its own user namespace (the default).
    pub fn user_namespace(&self) -> bool {
        self.user_namespace.unwrap_or(true)
    }

    /// What every process of the container gets (before its own `security`).
    pub fn processes(&self) -> SecuritySpec {
        SecuritySpec {
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            seccomp_allow: self.seccomp_allow.clone(),
            no_new_privs: self.no_new_privs,
        }
    }
}

fn default_base() -> Base {
    Base::default()
}

/// "host", or "debian:<suite>" such as "debian:bookworm" (the plan's too).
pub use crate::vocab::values::Base;

/// A file placed into the container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FileSpec {
    /// Absolute path inside the container.
    pub path: AbsPath,
    /// The file's content. Exactly one of `content` and `source` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// A file next to the spec whose content is used (read at plan time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Octal mode, default "0644".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Owner as "user:group", default "root:root".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// A mount in the container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MountSpec {
    /// Absolute path inside the container.
    pub target: AbsPath,
    /// "volume" (default), "bind" or "tmpfs".
    #[serde(rename = "type", default = "default_mount_kind")]
    pub kind: MountKind,
    /// Volume: a name or relative path under the container's volume folder (default:
    /// derived from the target). Bind: an absolute host path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Tmpfs size, e.g. "64M".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Size>,
    /// Mount read-only.
    #[serde(default)]
    pub read_only: bool,
    /// Volume or tmpfs: who owns its top folder, "user" or "user:group" as the
    /// container's /etc/passwd knows them (default "root:root"), so a service that
    /// is not root can write its own data. A volume gets it when it is made; the
    /// data in an existing one is left as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<crate::vocab::values::Owner>,
    /// Volume or tmpfs: octal mode of its top folder, e.g. "0750" (default: 0755
    /// for a volume, 1777 for a tmpfs). Like `owner`, set when a volume is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
}

fn default_mount_kind() -> MountKind {
    MountKind::Volume
}

/// Network of the container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NetworkSpec {
    /// "routed" (default when an address is given), "none" (default otherwise) or "host".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<NetMode>,
    /// IPv4 address of the container (a /32), or "auto".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Spec>,
    /// IPv6 address of the container (a /128), or "auto".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Spec>,
    /// Masquerade the container's outgoing IPv4 traffic behind the host.
    #[serde(default)]
    pub nat: bool,
    /// Answer ARP and NDP for the container's addresses on this host uplink (e.g. "eth0").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_arp: Option<String>,
    /// Extra networks routed to the container (e.g. a NAT64 prefix).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<Cidr>,
    /// Host ports forwarded to the container, e.g. "8080:80/tcp".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<Publish>,
    /// Name servers written to the container's /etc/resolv.conf.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<std::net::IpAddr>,
}

/// A generic supervised program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProcessSpec {
    /// Program and arguments (argv list; no shell).
    pub command: Vec<String>,
    /// User to run as (default root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<AbsPath>,
    /// "no", "on-failure" (default) or "always".
    #[serde(default)]
    pub restart: Restart,
    /// Readiness check: `{ tcp = 80 }`, `{ unix = "/run/x.sock" }` or `{ command = [...] }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<Ready>,
    /// Programs or services that must be ready before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Signal that makes the program reload its configuration (e.g. "HUP"); without
    /// it, a changed file restarts the program.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload_signal: Option<String>,
    /// Files (container paths) whose change reloads or restarts this program.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uses: Vec<AbsPath>,
    /// Containment of this program beyond the container's `security`.
    #[serde(default, skip_serializing_if = "SecuritySpec::is_empty")]
    pub security: SecuritySpec,
}

/// Containment beyond the defaults. By default every process has at most Podman's
/// eleven capabilities (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, NET_BIND_SERVICE,
/// SETFCAP, SETGID, SETPCAP, SETUID, SYS_CHROOT; a non-root user has none), runs with
/// `no_new_privs` and under a seccomp filter at least as strict as Docker's default
/// profile. `plan` and `status` show every change made here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SecuritySpec {
    /// Capabilities added to the default set, e.g. ["NET_ADMIN"].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<Capability>,
    /// Capabilities of the default set taken away, e.g. ["CHOWN"].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<Capability>,
    /// System calls the default seccomp filter refuses but this lets through, e.g.
    /// ["ptrace"]. A capability in `cap_add` already brings its own calls (SYS_PTRACE:
    /// ptrace; SYS_ADMIN: mount, unshare, ...), as in Docker.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seccomp_allow: Vec<Syscall>,
    /// `false` turns off `no_new_privs` for this program, so it may gain privileges
    /// through execve of a setuid file or one with file capabilities on a mount that
    /// honours them (the container's own mounts are all nosuid, so su and sudo still
    /// gain nothing there). Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_new_privs: Option<bool>,
}

impl SecuritySpec {
    pub fn is_empty(&self) -> bool {
        self == &SecuritySpec::default()
    }
}

/// A Rhai hook. Give exactly one of `script` and `inline`.
///
/// The script may define `fn on_spec(spec)` (runs before modules; returns the spec)
/// and `fn on_plan(plan)` (runs after; returns the plan).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HookSpec {
    /// A `.rhai` file next to the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// The script text itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
}

/// Resource limits, applied through cgroups where the controller exists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Limits {
    /// Memory limit, e.g. "512M".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Size>,
    /// Most processes the container may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub pids: Option<u32>,
    /// Relative CPU weight, 1-10000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub cpu_weight: Option<u32>,
}
