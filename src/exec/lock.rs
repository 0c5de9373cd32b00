//! An exclusive lock on a file: flock(2), held until dropped.
//!
//! Invariant: flock locks belong to the open file description, so two `Lock`s on one
//! path conflict even inside one process, and the kernel drops a lock when its holder
//! dies (a `kill -9` never leaves a container locked).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// An exclusive flock on a container (or on a root-wide resource); released on drop.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Take the lock at `path` if no one holds it; `None` when another does.
    pub fn try_take(path: &Path) -> std::io::Result<Option<Lock>> {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Some(Lock { _file: file }));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Ok(None);
        }
        Err(err)
    }

    /// Take the lock at `path`, waiting for another holder; `waiting` is called once
    /// if the lock is busy, before blocking.
    pub fn take(path: &Path, waiting: impl FnOnce()) -> std::io::Result<Lock> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        let fd = file.as_raw_fd();
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Lock { _file: file });
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(err);
        }
        waiting();
        loop {
            // SAFETY: as above; blocking.
            if unsafe { libc::flock(fd, libc::LOCK_EX) } == 0 {
                return Ok(Lock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x/.lock");
        let a = Lock::take(&p, || panic!("free lock reported busy")).unwrap();
        let p2 = p.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            // flock locks belong to the open file description, so two opens conflict
            // even in one process.
            let _b = Lock::take(&p2, || tx.send(()).unwrap()).unwrap();
        });
        rx.recv_timeout(std::time::Duration::from_secs(30)).expect("second taker did not see the lock busy");
        drop(a);
        t.join().unwrap();
    }
}
