//! Test tiers: which tests may run here.
//!
//! - **unit** (plain `cargo test`): needs neither root nor network and changes
//!   nothing on the host. Always on; passes as an unprivileged user.
//! - **host** (`CONTAINER_TEST_HOST=1`, as root): real namespaces, mounts, veths,
//!   nftables, cgroups; the `host` base only, nothing downloaded.
//! - **e2e** (`CONTAINER_TEST_E2E=1`, as root, with Debian's archive reachable):
//!   debootstrap builds and real daemons proven by their real clients. It includes
//!   the host tier: `CONTAINER_TEST_E2E=1 cargo test` runs every test.
//!
//! A test of a higher tier starts with `require_host!()` or `require_e2e!()`, before
//! anything else (in particular before the suite's shared state, such as the
//! harness' state root, is made): when its tier is off, or the process is not root,
//! it says `skipped: needs …` and returns. The reason goes to the test's own output
//! (shown with `--nocapture`) and, once per reason with the names of the skipped
//! tests, to the terminal when the test binary exits, so an unprivileged
//! `cargo test` passes and says what it left out.

use std::sync::Mutex;

/// Why the host tier cannot run here, or `None` when it can.
pub fn host_missing() -> Option<String> {
    if !flag("CONTAINER_TEST_HOST") && !flag("CONTAINER_TEST_E2E") {
        return Some("the host tier (set CONTAINER_TEST_HOST=1 and run as root)".into());
    }
    if !is_root() {
        return Some("root (the host tier makes namespaces, veths, nftables rules and cgroups)".into());
    }
    None
}

/// Why the end-to-end tier cannot run here, or `None` when it can.
pub fn e2e_missing() -> Option<String> {
    if !flag("CONTAINER_TEST_E2E") {
        return Some("the end-to-end tier (set CONTAINER_TEST_E2E=1 and run as root)".into());
    }
    if !is_root() {
        return Some("root (the end-to-end tier builds Debian roots and runs daemons)".into());
    }
    None
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The skipped tests of this binary: (reason, test name).
static SKIPPED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// Record that the calling test is skipped because it needs `why`, and say so.
pub fn skip(why: &str) {
    eprintln!("skipped: needs {why}");
    // libtest runs each test on a thread named after it.
    let name = std::thread::current().name().unwrap_or("a test").to_string();
    let mut list = SKIPPED.lock().unwrap_or_else(|e| e.into_inner());
    if list.is_empty() {
        // SAFETY: registers a plain function without arguments.
        unsafe { libc::atexit(report) };
    }
    list.push((why.to_string(), name));
}

/// At exit: one line per reason, with the tests it skipped (libtest captures what a
/// passing test prints, so this is where an unprivileged run shows its skips).
extern "C" fn report() {
    use std::io::Write;
    let mut list = std::mem::take(&mut *SKIPPED.lock().unwrap_or_else(|e| e.into_inner()));
    list.sort();
    let mut err = std::io::stderr().lock();
    let mut i = 0;
    while i < list.len() {
        let why = &list[i].0;
        let names: Vec<&str> = list[i..].iter().take_while(|(w, _)| w == why).map(|(_, n)| n.as_str()).collect();
        let _ = writeln!(err, "skipped: needs {why}: {} test(s): {}", names.len(), names.join(", "));
        i += names.len();
    }
    let _ = err.flush();
}

/// Return from the calling test (saying why) unless the host tier is on.
#[macro_export]
macro_rules! require_host {
    () => {
        if let Some(why) = $crate::support::tier::host_missing() {
            $crate::support::tier::skip(&why);
            return;
        }
    };
}

/// Return from the calling test (saying why) unless the end-to-end tier is on.
#[macro_export]
macro_rules! require_e2e {
    () => {
        if let Some(why) = $crate::support::tier::e2e_missing() {
            $crate::support::tier::skip(&why);
            return;
        }
    };
}
