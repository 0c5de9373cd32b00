//! A log pipe and its size-rotated file.
//!
//! Invariant: the supervisor keeps both ends of the pipe for the life of the sink, so
//! the read end never reports end-of-file and every instance of a restarted service
//! (and its readiness probes and reload commands) writes into the same pipe. Data is
//! streamed through a small stack buffer; the file never grows past `max` bytes: when
//! it is full it becomes `<name>.1` (replacing the previous one) and a new file starts.

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub struct LogSink {
    read: OwnedFd,
    write: OwnedFd,
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
}

fn open(path: &Path) -> io::Result<(File, u64)> {
    let file = OpenOptions::new().create(true).append(true).mode(0o640).open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

impl LogSink {
    pub fn new(path: PathBuf, max: u64) -> io::Result<LogSink> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        // Only our end is non-blocking: a child writing faster than we read waits
        // instead of losing output.
        fcntl(&read, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        let (file, size) = open(&path)?;
        Ok(LogSink { read, write, path, file, size, max: max.max(1) })
    }

    /// A new rotation size (`reconfigure`); applies from the next write on.
    pub fn set_max(&mut self, max: u64) {
        self.max = max.max(1);
    }

    /// The end children write to (dup'ed onto their stdout and stderr).
    pub fn writer(&self) -> BorrowedFd<'_> {
        self.write.as_fd()
    }

    pub fn reader(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Copies everything the pipe holds now into the file.
    pub fn drain(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        loop {
            match nix::unistd::read(&self.read, &mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => self.append(&buf[..n])?,
                Err(nix::errno::Errno::EAGAIN) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn append(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.size >= self.max {
                self.rotate()?;
            }
            let room = usize::try_from(self.max - self.size).unwrap_or(usize::MAX);
            let n = data.len().min(room);
            self.file.write_all(&data[..n])?;
            self.size += n as u64;
            data = &data[n..];
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        std::fs::rename(&self.path, &old)?;
        let (file, size) = open(&self.path)?;
        self.file = file;
        self.size = size;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_max_and_keeps_one_old_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("svc.log");
        let mut s = LogSink::new(p.clone(), 10).unwrap();
        for chunk in ["0123456", "789abcdefghij", "klmnopqrstuvwxyz"] {
            nix::unistd::write(s.writer(), chunk.as_bytes()).unwrap();
            s.drain().unwrap();
        }
        // 36 bytes: files of 10, 10, 10 (dropped), 6.
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "uvwxyz");
        assert_eq!(std::fs::read_to_string(d.path().join("svc.log.1")).unwrap(), "klmnopqrst");
        s.drain().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "uvwxyz");
    }

    #[test]
    fn appends_to_an_existing_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("svc.log");
        std::fs::write(&p, "12345678").unwrap();
        let mut s = LogSink::new(p.clone(), 10).unwrap();
        nix::unistd::write(s.writer(), b"abcd").unwrap();
        s.drain().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "cd");
        assert_eq!(std::fs::read_to_string(d.path().join("svc.log.1")).unwrap(), "12345678ab");
    }
}
