//! Runtime: carry out plans on this host — apply, start, stop, destroy — and answer
//! what runs (list, status, logs).
//!
//! Invariant: this is where the plan meets the kernel, but no decision is made here
//! that the plan's diff did not make: the effects of `plan::diff` say what to do, and
//! the pieces in `exec` do it. Every command that changes a container holds the
//! container's lock. An apply writes `pending.json` before it touches anything and
//! `state.json` after everything worked; finding `pending.json` means an earlier apply
//! was interrupted, and the next apply (or `destroy`) recreates from scratch, cleaning
//! up whatever the interrupted one left (see [`lifecycle`]).

pub mod crash;
pub mod enter;
pub mod ids;
pub mod layers;
pub mod layout;
pub mod lifecycle;
pub mod observe;
pub mod prepare;
pub mod secrets;

pub use crash::CrashPoint;
pub use layout::Dirs;
pub use lifecycle::*;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Sandbox(#[from] crate::exec::sandbox::SandboxError),
    #[error("network: {0}")]
    Net(#[from] crate::exec::net::NetError),
    #[error("nftables: {0}")]
    Nft(#[from] crate::exec::nft::NftError),
    #[error("cgroups: {0}")]
    Cgroup(#[from] crate::exec::cgroup::CgroupError),
    #[error("supervisor: {0}")]
    Supervisor(#[from] crate::exec::supervisor::SupervisorError),
    #[error("exec: {0}")]
    Attach(#[from] crate::exec::attach::AttachError),
    #[error("build: {0}")]
    Build(#[from] crate::exec::build::BuildError),
    #[error("user namespace ids: {0}")]
    Ids(#[from] ids::IdsError),
    #[error("{0}")]
    Unsupported(String),
    #[error("no container `{0}` under this state root (see `container list`)")]
    NotFound(String),
    #[error("{0}")]
    Failed(String),
}
