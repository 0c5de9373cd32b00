//! The keeper: the one process that waits for a container's PID 1 and records how it
//! ended (in the spirit of Podman's conmon, but it does nothing else).
//!
//! Invariant: the keeper is PID 1's parent for PID 1's whole life. The sandbox forks
//! it from the CLI just before PID 1 is cloned, and it is the keeper that clones PID 1
//! (see `sandbox::Keeper`); then it execs `container-init __keeper EXIT_FILE`, so it
//! holds none of the CLI's memory. Before that exec it leaves the CLI's session and
//! process group (`setsid`), puts /dev/null on 0, 1 and 2 and closes every other fd:
//! it holds no pipe of whoever ran the CLI (a caller reading the CLI's output to EOF
//! never waits for the keeper), and it ignores SIGHUP and SIGPIPE. Nobody waits for
//! the keeper: it `waitid`s for its one child, writes [`ExitRecord`] to EXIT_FILE
//! (`exit.json` in the container's host-private folder) atomically (a temporary file
//! renamed over it) and exits. Only the exit record tells a crash's exit status: PID 1
//! is no child of any later command.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// `container-init __keeper EXIT_FILE`.
pub const KEEPER_ARG: &str = "__keeper";

/// How a container's PID 1 ended, as its keeper saw it (`exit.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// PID 1's host pid.
    pub pid: i32,
    /// Its exit code, when it exited.
    pub code: Option<i32>,
    /// The signal that killed it ("SIGKILL"), when one did.
    pub signal: Option<String>,
    /// When it ended, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// No keeper saw it end (a container an older version started): how is unknown.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unknown: bool,
}

impl ExitRecord {
    /// "exit code 3", "killed by SIGKILL", "exit status unknown".
    pub fn describe(&self) -> String {
        match (&self.code, &self.signal) {
            (_, Some(s)) => format!("killed by {s}"),
            (Some(c), None) => format!("exit code {c}"),
            (None, None) => "exit status unknown".to_string(),
        }
    }
}

/// The keeper of the live PID 1 `pid`, as a handle that outlives both: its parent,
/// when that is a `container-init __keeper` process (a PID 1 started without a
/// keeper has another parent: `None`). The parent is asked again once the handle is
/// open, so a pid recycled meanwhile is never taken for it: while PID 1 lives, its
/// keeper does. Waiting for the keeper's exit is waiting for the record, which it
/// writes just before it exits.
pub fn of(pid: i32) -> Option<crate::exec::process::Process> {
    let ppid = crate::exec::process::parent(pid)?;
    let keeper = crate::exec::process::Process::open(ppid)?;
    let cmdline = std::fs::read(format!("/proc/{ppid}/cmdline")).ok()?;
    let is_keeper = cmdline.split(|&b| b == 0).nth(1) == Some(KEEPER_ARG.as_bytes());
    (is_keeper && crate::exec::process::parent(pid) == Some(ppid)).then_some(keeper)
}

/// The record at `path`, if there is a readable one.
pub fn read(path: &Path) -> Option<ExitRecord> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Write `rec` to `path` atomically (a temporary file beside it, renamed over it).
/// The folder is not created: a container destroyed meanwhile gets no record.
pub fn write(path: &Path, rec: &ExitRecord) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(&serde_json::to_vec(rec).unwrap_or_default())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn signal_name(n: i32) -> String {
    nix::sys::signal::Signal::try_from(n).map(|s| s.as_str().to_string()).unwrap_or_else(|_| format!("signal {n}"))
}

/// The keeper's life: wait for the one child, record how it ended, exit.
pub fn keeper_main(exit_file: &Path) -> u8 {
    // The sandbox did all of this before the exec; again, in case someone runs it by
    // hand: nothing of the caller stays open here.
    // SAFETY: plain syscalls on fd numbers and signal dispositions of this process.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
        }
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        libc::setsid();
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::prctl(libc::PR_SET_NAME, c"container-keep".as_ptr());
    }
    loop {
        // SAFETY: an all-zero siginfo_t is a valid value (plain C data).
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid fills the siginfo we pass.
        let r = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED) };
        if r < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            // No child (it never started): nothing to record.
            return 0;
        }
        // SAFETY: waitid filled a SIGCHLD siginfo.
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        let (code, signal) = match info.si_code {
            libc::CLD_EXITED => (Some(status), None),
            _ => (None, Some(signal_name(status))),
        };
        let rec = ExitRecord { pid, code, signal, at_ms: now_ms(), unknown: false };
        return if write(exit_file, &rec).is_ok() { 0 } else { 1 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_describe_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("exit.json");
        let rec = ExitRecord { pid: 7, code: None, signal: Some("SIGKILL".into()), at_ms: 1, unknown: false };
        write(&p, &rec).unwrap();
        assert_eq!(read(&p), Some(rec.clone()));
        assert_eq!(rec.describe(), "killed by SIGKILL");
        assert_eq!(ExitRecord { code: Some(3), signal: None, ..rec.clone() }.describe(), "exit code 3");
        assert_eq!(signal_name(9), "SIGKILL");
        assert!(write(&dir.path().join("gone/exit.json"), &rec).is_err(), "no folder is made");
    }
}
