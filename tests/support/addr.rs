//! Test addresses: only 100.64.0.0/10 and the project's ULA fd63:6f6e:7461:696e::/64,
//! each suite in its own block so suites running at the same time never collide.
//!
//! | block | suite |
//! |---|---|
//! | `100.72.<slice>.0/24`, `fd63:6f6e:7461:696e::<slice>:0/112` | `exec_net` (its own plan) |
//! | `100.74.<slice>.0/24`, `fd63:6f6e:7461:696e:74:<slice>::/96` | `lifecycle` (its own plan) |
//! | `100.75.<slice>.0/24`, `fd63:6f6e:7461:696e:75:<slice>::/96` | every suite with a `salt` ([`v4`], [`v6`]) |
//!
//! Within block 75 each suite has its own `salt` (build 1, e2e_web 2, e2e_infra 3, …:
//! a new suite takes an unused one); the process id separates concurrent runs.

/// This binary's slice of block 75 (`salt` tells binaries apart when they run in one
/// process id range; the pid separates concurrent runs).
pub fn slice(salt: u32) -> u32 {
    (std::process::id() * 7 + salt * 31) % 250 + 1
}

/// Host `n` of this binary's IPv4 slice of block 75.
pub fn v4(salt: u32, n: u32) -> String {
    v4_in(75, slice(salt), n)
}

/// Host `n` of this binary's IPv6 slice of block 75.
pub fn v6(salt: u32, n: u32) -> String {
    v6_in(75, slice(salt), n)
}

/// `100.<block>.<slice>.<n>`.
pub fn v4_in(block: u32, slice: u32, n: u32) -> String {
    format!("100.{block}.{slice}.{n}")
}

/// `fd63:6f6e:7461:696e:<block>:<slice>::<n>` (`block` written as is, the rest in hex).
pub fn v6_in(block: u32, slice: u32, n: u32) -> String {
    format!("fd63:6f6e:7461:696e:{block}:{slice:x}::{n:x}")
}
