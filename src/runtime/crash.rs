//! Crash points: the steps of an apply where the crash-safety test kills us.
//!
//! Invariant: every point is a [`CrashPoint`], so a misspelt one does not compile;
//! [`CrashPoint::ALL`] lists them in the order an apply that (re)creates a container
//! reaches them, and the crash test in `tests/lifecycle.rs` walks that list (and
//! [`CrashPoint::LIVE`] for an in-place update; `tests/damage.rs` walks
//! [`CrashPoint::DESTROY`], the steps of a `destroy`). With `CONTAINER_TEST_CRASH=<point>`
//! in the environment the process kills itself with SIGKILL on reaching `<point>`,
//! exactly like `kill -9` from outside at that moment; a value that names no point
//! aborts the process at the first crash point instead of passing silently.
//! Harmless without the variable.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// The environment variable that arms a crash point.
pub const CRASH_ENV: &str = "CONTAINER_TEST_CRASH";

/// A step of an apply where a test may kill the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CrashPoint {
    /// `pending.json` written, nothing else changed yet.
    Pending,
    /// Secrets generated.
    Secrets,
    /// Rendered files and network files written.
    Files,
    /// Volumes created and owned.
    Volumes,
    /// The container's cgroup made (not yet spawned).
    Cgroup,
    /// PID 1 spawned and blocked before exec; `run.json` written.
    Spawn,
    /// The veth, addresses and routes set up.
    Network,
    /// The nftables table rebuilt.
    Nft,
    /// PID 1 released to exec the supervisor.
    Release,
    /// Every service ready.
    Ready,
    /// Just before `state.json` is written and `pending.json` removed.
    Record,
    /// `destroy`: the container stopped and its host objects (veth, rules, cgroups,
    /// `run.json`) gone; its addresses and files not yet released.
    DestroyStopped,
    /// `destroy`: addresses released and every file but `state.json` and
    /// `pending.json` removed (they go last, so a second `destroy` still finds it).
    DestroyFiles,
}

impl CrashPoint {
    /// Every point, in the order an apply that (re)creates the container reaches them.
    pub const ALL: [CrashPoint; 11] = [
        CrashPoint::Pending,
        CrashPoint::Secrets,
        CrashPoint::Files,
        CrashPoint::Volumes,
        CrashPoint::Cgroup,
        CrashPoint::Spawn,
        CrashPoint::Network,
        CrashPoint::Nft,
        CrashPoint::Release,
        CrashPoint::Ready,
        CrashPoint::Record,
    ];

    /// The points an in-place update of a running container reaches, in order (it
    /// spawns nothing, so no cgroup, spawn or release).
    pub const LIVE: [CrashPoint; 8] = [
        CrashPoint::Pending,
        CrashPoint::Secrets,
        CrashPoint::Files,
        CrashPoint::Volumes,
        CrashPoint::Network,
        CrashPoint::Nft,
        CrashPoint::Ready,
        CrashPoint::Record,
    ];

    /// The points a `destroy` reaches, in order.
    pub const DESTROY: [CrashPoint; 2] = [CrashPoint::DestroyStopped, CrashPoint::DestroyFiles];

    /// The spelling in `CONTAINER_TEST_CRASH`.
    pub fn name(self) -> &'static str {
        match self {
            CrashPoint::Pending => "pending",
            CrashPoint::Secrets => "secrets",
            CrashPoint::Files => "files",
            CrashPoint::Volumes => "volumes",
            CrashPoint::Cgroup => "cgroup",
            CrashPoint::Spawn => "spawn",
            CrashPoint::Network => "network",
            CrashPoint::Nft => "nft",
            CrashPoint::Release => "release",
            CrashPoint::Ready => "ready",
            CrashPoint::Record => "record",
            CrashPoint::DestroyStopped => "destroy-stopped",
            CrashPoint::DestroyFiles => "destroy-files",
        }
    }
}

impl fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `CONTAINER_TEST_CRASH` value that names no crash point.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a crash point (known: {known}, {destroy})", known = CrashPoint::ALL.map(CrashPoint::name).join(", "), destroy = CrashPoint::DESTROY.map(CrashPoint::name).join(", "))]
pub struct UnknownCrashPoint(pub String);

impl FromStr for CrashPoint {
    type Err = UnknownCrashPoint;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CrashPoint::ALL
            .into_iter()
            .chain(CrashPoint::DESTROY)
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownCrashPoint(s.to_string()))
    }
}

/// The point `CONTAINER_TEST_CRASH` arms, read once.
fn armed() -> Option<CrashPoint> {
    static ARMED: OnceLock<Option<CrashPoint>> = OnceLock::new();
    *ARMED.get_or_init(|| {
        let value = std::env::var(CRASH_ENV).ok()?;
        match value.parse() {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("{CRASH_ENV}: {e}");
                std::process::abort();
            }
        }
    })
}

/// Die here, like `kill -9`, if `CONTAINER_TEST_CRASH` names `point`.
pub fn crash_point(point: CrashPoint) {
    if armed() == Some(point) {
        crate::exec::process::kill_self();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_are_distinct() {
        for p in CrashPoint::ALL.into_iter().chain(CrashPoint::DESTROY) {
            assert_eq!(p.name().parse::<CrashPoint>(), Ok(p));
            assert_eq!(p.to_string(), p.name());
        }
        let mut names: Vec<&str> =
            CrashPoint::ALL.into_iter().chain(CrashPoint::DESTROY).map(CrashPoint::name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CrashPoint::ALL.len() + CrashPoint::DESTROY.len());
        let e = "netwrok".parse::<CrashPoint>().unwrap_err();
        assert!(e.to_string().contains("known: pending, secrets"), "{e}");
    }

    #[test]
    fn live_points_are_in_all_and_in_order() {
        let pos = |p: CrashPoint| CrashPoint::ALL.iter().position(|q| *q == p).expect("in ALL");
        assert!(CrashPoint::LIVE.windows(2).all(|w| pos(w[0]) < pos(w[1])));
    }
}
