//! The one harness of every integration suite (`mod support;` at the top of a suite).
//!
//! - [`tier`]: which tests may run here (`require_host!()`, `require_e2e!()`).
//! - [`cli`]: the real `container` binary on one state root per test binary, a
//!   container of a test ([`Ct`]) destroyed when dropped, and the shared layer cache.
//! - [`addr`]: each suite's own slice of the test address space.
//! - [`host`]: host programs that must succeed, background processes, polling.
//! - [`root`]: a state root of one test, its containers destroyed when dropped.
//! - [`net`]: network namespaces and links a test makes (removed when dropped), and
//!   clients (ping, HTTP) that only reach those namespaces, the tests' containers and
//!   loopback.
//!
//! Everything but `net` is re-exported here (`use support::*;`); `net` stays a path
//! (`support::net::Netns`) so its names never clash with a suite's own.
#![allow(dead_code, unused_imports)]

pub mod addr;
pub mod cli;
pub mod host;
pub mod net;
pub mod root;
pub mod tier;

pub use addr::*;
pub use cli::*;
pub use host::*;
pub use net::curl;
pub use root::*;
