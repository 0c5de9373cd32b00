//! Host programs a test runs (`ip`, `nft`, clients), background processes, polling.

use crate::support::cli::stdout_of;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Run a host program; its output.
pub fn host(argv: &[&str]) -> Output {
    Command::new(argv[0]).args(&argv[1..]).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

/// Run a host program that must succeed; its stdout.
#[track_caller]
pub fn host_ok(argv: &[&str]) -> String {
    stdout_of(&format!("{argv:?}"), host(argv))
}

/// A background process, killed and reaped when dropped (also when the test fails).
pub struct Bg(pub Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Poll `f` until it returns Some, for up to `secs`.
#[track_caller]
pub fn eventually<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What a [`Victim`]'s host file holds.
pub const VICTIM_MARKER: &str = "host-secret-7c1f3a\n";

/// A host file outside every state root, the target of an attack's plants, and a
/// name beside it that must never be created. The folder goes when dropped.
pub struct Victim {
    _dir: tempfile::TempDir,
    pub existing: PathBuf,
    pub absent: PathBuf,
}

impl Victim {
    pub fn new() -> Victim {
        let dir = tempfile::Builder::new().prefix("ct-victim").tempdir().expect("tempdir");
        let existing = dir.path().join("hostfile");
        std::fs::write(&existing, VICTIM_MARKER).expect("write the host file");
        let absent = dir.path().join("created-by-container");
        Victim { existing, absent, _dir: dir }
    }

    #[track_caller]
    pub fn assert_unchanged(&self) {
        let now = std::fs::read_to_string(&self.existing).expect("read the host file");
        assert_eq!(now, VICTIM_MARKER, "host file changed");
        assert!(!self.absent.exists(), "{} was created on the host", self.absent.display());
    }
}
