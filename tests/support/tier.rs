//! Test tiers: which tests may run here.
//!
//! - **unit** (plain `cargo test`): needs neither root nor network and changes
//!   nothing on the host. Always on.
//! - **host** (`CONTAINER_TEST_HOST=1`, as root): real namespaces, mounts, veths,
//!   nftables, cgroups; the `host` base only, nothing downloaded.
//! - **e2e** (`CONTAINER_TEST_E2E=1`, as root, with Debian's archive reachable):
//!   debootstrap builds and real daemons proven by their real clients.
//!
//! A test of a higher tier starts with `require_host!()` or `require_e2e!()`: when its
//! tier is off (or the process is not root) it prints `skipped: needs …` and returns,
//! so an unprivileged `cargo test` passes and says what it left out.

/// Why the host tier cannot run here, or `None` when it can.
pub fn host_missing() -> Option<String> {
    if !flag("CONTAINER_TEST_HOST") && !flag("CONTAINER_TEST_E2E") {
        return Some("the host tier (set CONTAINER_TEST_HOST=1 and run as root)".into());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("root (the host tier makes namespaces, veths and nftables rules)".into());
    }
    None
}

/// Why the end-to-end tier cannot run here, or `None` when it can.
pub fn e2e_missing() -> Option<String> {
    if !flag("CONTAINER_TEST_E2E") {
        return Some("the end-to-end tier (set CONTAINER_TEST_E2E=1 and run as root)".into());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("root (the end-to-end tier builds Debian roots and runs daemons)".into());
    }
    None
}

fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Return from the calling test (printing why) unless the host tier is on.
#[macro_export]
macro_rules! require_host {
    () => {
        if let Some(why) = $crate::support::tier::host_missing() {
            eprintln!("skipped: needs {why}");
            return;
        }
    };
}

/// Return from the calling test (printing why) unless the end-to-end tier is on.
#[macro_export]
macro_rules! require_e2e {
    () => {
        if let Some(why) = $crate::support::tier::e2e_missing() {
            eprintln!("skipped: needs {why}");
            return;
        }
    };
}
