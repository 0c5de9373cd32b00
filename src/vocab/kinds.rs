//! The spec's enumerations that the plan speaks too: how a path is mounted, how the
//! container is networked, when a program restarts and when it counts as ready.
//!
//! Invariant: what a user writes is what the plan stores; these serialize to the
//! spec's spelling and describe themselves to the JSON schema (their doc comments are
//! the schema's descriptions).

use super::values::{AbsPath, Port};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Kind of a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// A named folder under the container's state dir that outlives the container.
    Volume,
    /// A host path bound into the container.
    Bind,
    /// A memory-backed filesystem, empty at every start.
    Tmpfs,
}

/// How the container is networked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NetMode {
    /// A veth pair routed by the host: /32 and /128 addresses, host as gateway.
    Routed,
    /// Only a loopback interface.
    None,
    /// Share the host's network namespace.
    Host,
}

/// Restart policy of a supervised program.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Never restart.
    No,
    /// Restart when it exits with a non-zero status or a signal (default).
    #[default]
    OnFailure,
    /// Always restart.
    Always,
}

impl Restart {
    /// The default ("on-failure"), left out of a recorded plan.
    pub fn is_default(&self) -> bool {
        *self == Restart::OnFailure
    }
}

/// When a supervised program counts as ready.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Ready {
    /// A TCP port on the container's loopback accepts connections.
    Tcp(Port),
    /// A unix socket accepts connections.
    Unix(AbsPath),
    /// A command exits 0 (argv list).
    Command(Vec<String>),
}
