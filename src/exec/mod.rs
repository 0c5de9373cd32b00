//! Exec: the only code that touches the kernel or runs programs.
//!
//! Invariant: everything here carries out a plan that `plan` already decided; no
//! policy is made here. Pieces: `net` (veth, addresses, routes over netlink),
//! `nft` (the tool's nftables table), `sandbox` (namespaces, rootfs, pivot_root),
//! `supervisor` (PID 1 inside a container), `cgroup` (limits), `attach` (exec into a
//! running container), `process` (pidfd handles; our own SIGKILL for crash points),
//! `lock` (flock), `random` (getrandom), `build` (debootstrap and commands inside a
//! layer being built), `unpack` (a tarball into a layer, in process, beneath its root), `caps`, `seccomp` and `harden` (the capabilities,
//! no_new_privs and system call filter every process that enters a container gets
//! before its exec). The executor stays single-threaded.

pub mod attach;
pub mod beneath;
pub mod build;
pub mod caps;
pub mod cgroup;
pub mod harden;
pub mod keeper;
pub mod livemount;
pub mod lock;
pub mod net;
pub mod nft;
pub mod postfork;
pub mod process;
pub mod random;
pub mod sandbox;
pub mod seccomp;
pub mod supervisor;
pub mod unpack;
