//! A log pipe and its size-rotated file.
//!
//! Invariant: the supervisor keeps both ends of the pipe for the life of the sink, so
//! the read end never reports end-of-file and every instance of a restarted service
//! (and its readiness probes and reload commands) writes into the same pipe. Data is
//! streamed through a small stack buffer; the file never grows past `max` bytes: when
//! it is full it becomes `<name>.1` (replacing the previous one) and a new file starts.
//!
//! A write that fails (ENOSPC, EROFS, EIO, a failed rotation or reopen) never stops the
//! draining: the data is dropped, its lines are counted ([`LogSink::dropped`]) with the
//! last error, and the next write tries again, so logging resumes by itself once the
//! fault is gone. The pipe is always emptied, so a service never blocks on its output
//! because the disk is full.
//!
//! Times ([`LogSink::timed`], service logs): beside `<name>.log` the sink keeps
//! `<name>.log.t`, one text line `OFFSET UNIX_NANOS` per log line, the byte offset in
//! the log where the line starts and the time (`CLOCK_REALTIME`) the supervisor read
//! it from the pipe. The log itself stays the service's bytes, unchanged. The record
//! of a line is written before the line, so a reader that reads the log and then the
//! times always finds it; the times rotate with the log (`<name>.log.1.t`). A record
//! that cannot be written is lost without further ado (its line then reads with the
//! time of the line before it); a torn record is skipped by the reader. Records are
//! formatted on the stack: no allocation per line.

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
    /// `None` while the file could not be opened (tried again at the next write).
    file: Option<File>,
    size: u64,
    max: u64,
    dropped: u64,
    error: Option<String>,
    /// The times file and its open handle (see the module doc), when timed.
    times: Option<(PathBuf, Option<File>)>,
    /// The next byte appended starts a line.
    line_start: bool,
}

/// The suffix of the times file beside a log (`svc.log.t`, `svc.log.1.t`).
pub const TIMES_SUFFIX: &str = ".t";

/// `path` + `.t`.
pub fn times_path(log: &Path) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(TIMES_SUFFIX);
    PathBuf::from(p)
}

/// The records of a times file: (offset in the log, Unix time in nanoseconds), in
/// file order. Lines that do not parse (a record torn by a full disk) are skipped.
pub fn parse_times(data: &[u8]) -> Vec<(u64, i64)> {
    data.split(|b| *b == b'\n')
        .filter_map(|l| {
            let l = std::str::from_utf8(l).ok()?;
            let (off, t) = l.split_once(' ')?;
            Some((off.parse().ok()?, t.parse().ok()?))
        })
        .collect()
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
        let mut sink = LogSink {
            read,
            write,
            path,
            file: None,
            size: 0,
            max: max.max(1),
            dropped: 0,
            error: None,
            times: None,
            line_start: true,
        };
        // A log folder that cannot be written now does not keep the service from
        // running: its lines are counted as dropped until the file opens.
        if let Err(e) = sink.reopen() {
            sink.error = Some(e.to_string());
        }
        Ok(sink)
    }

    /// Also record when each line came (`<path>.t`, see the module doc).
    pub fn timed(mut self) -> LogSink {
        let t = times_path(&self.path);
        let f = open(&t).ok().map(|(f, _)| f);
        self.times = Some((t, f));
        self
    }

    /// Lines lost to write errors so far, and the last error.
    pub fn dropped(&self) -> (u64, Option<&str>) {
        (self.dropped, self.error.as_deref())
    }

    fn reopen(&mut self) -> io::Result<()> {
        let (file, size) = open(&self.path)?;
        self.file = Some(file);
        self.size = size;
        if let Some((t, f)) = self.times.as_mut() {
            *f = open(t).ok().map(|(f, _)| f);
        }
        Ok(())
    }

    /// Records `OFFSET NANOS` for every line that starts in `piece`, which is about
    /// to be written at the log's current size. Errors are ignored (module doc).
    fn record_times(&mut self, piece: &[u8], now: i64) {
        let Some((path, f)) = self.times.as_mut() else { return };
        if f.is_none() {
            *f = open(path).ok().map(|(f, _)| f);
        }
        let Some(f) = f.as_mut() else { return };
        let mut buf = [0u8; 2048];
        let mut used = 0;
        let mut start = self.line_start;
        for (i, b) in piece.iter().enumerate() {
            if start {
                if used + 48 > buf.len() {
                    let _ = f.write_all(&buf[..used]);
                    used = 0;
                }
                let mut c = io::Cursor::new(&mut buf[used..]);
                let _ = writeln!(c, "{} {now}", self.size + i as u64);
                used += c.position() as usize;
            }
            start = *b == b'\n';
        }
        if used > 0 {
            let _ = f.write_all(&buf[..used]);
        }
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

    /// Copies everything the pipe holds now into the file; what cannot be written
    /// is dropped and counted. Fails only when the pipe cannot be read.
    pub fn drain(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        loop {
            match nix::unistd::read(&self.read, &mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    let now = if self.times.is_some() { unix_nanos() } else { 0 };
                    if let Err(e) = self.append(&buf[..n], now) {
                        self.drop_data(&buf[..n], &e);
                    }
                    self.line_start = buf[n - 1] == b'\n';
                }
                Err(nix::errno::Errno::EAGAIN) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Counts the lines of `data` (a chunk without a newline counts as one) as lost.
    fn drop_data(&mut self, data: &[u8], e: &io::Error) {
        let lines = data.iter().filter(|&&b| b == b'\n').count().max(1) as u64;
        self.dropped = self.dropped.saturating_add(lines);
        self.error = Some(describe(e));
    }

    fn append(&mut self, mut data: &[u8], now: i64) -> io::Result<()> {
        if self.file.is_none() {
            self.reopen()?;
        }
        while !data.is_empty() {
            if self.size >= self.max {
                self.rotate()?;
            }
            let room = usize::try_from(self.max - self.size).unwrap_or(usize::MAX);
            let n = data.len().min(room);
            if self.file.is_none() {
                return Err(io::ErrorKind::NotFound.into());
            }
            // The times of the lines first: a reader of the log then finds them.
            self.record_times(&data[..n], now);
            self.line_start = data[n - 1] == b'\n';
            let mut piece = &data[..n];
            data = &data[n..];
            let Some(file) = self.file.as_mut() else { return Err(io::ErrorKind::NotFound.into()) };
            // A short write leaves the size right: what was written counts.
            while !piece.is_empty() {
                match file.write(piece) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(w) => {
                        self.size += w as u64;
                        piece = &piece[w..];
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        std::fs::rename(&self.path, &old)?;
        self.file = None;
        if let Some((t, f)) = self.times.as_mut() {
            *f = None;
            // The old times go with the old log; times that cannot follow it must
            // not describe the new one.
            if std::fs::rename(&*t, times_path(Path::new(&old))).is_err() {
                let _ = std::fs::remove_file(&*t);
            }
        }
        self.reopen()
    }
}

/// Now as nanoseconds since the Unix epoch (0 before it: a clock that wrong).
fn unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// An I/O error as the status shows it: the system's text without "(os error N)".
fn describe(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
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
    fn times_record_where_each_line_starts_and_rotate_with_the_log() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("svc.log");
        let mut s = LogSink::new(p.clone(), 10).unwrap().timed();
        let before = unix_nanos();
        for chunk in ["ab\ncd", "e\n", "fghij\nk\n"] {
            nix::unistd::write(s.writer(), chunk.as_bytes()).unwrap();
            s.drain().unwrap();
        }
        let after = unix_nanos();
        // "ab\ncde\nfgh" filled the first file, "ij\nk\n" is the second.
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "ij\nk\n");
        assert_eq!(std::fs::read_to_string(d.path().join("svc.log.1")).unwrap(), "ab\ncde\nfgh");
        let old = parse_times(&std::fs::read(d.path().join("svc.log.1.t")).unwrap());
        let cur = parse_times(&std::fs::read(d.path().join("svc.log.t")).unwrap());
        assert_eq!(old.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 3, 7]);
        // "ij" continues the line "fgh": no record at 0.
        assert_eq!(cur.iter().map(|r| r.0).collect::<Vec<_>>(), [3]);
        assert!(old.iter().chain(&cur).all(|r| (before..=after).contains(&r.1)), "{old:?} {cur:?}");
        assert!(old.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    #[test]
    fn torn_time_records_are_skipped() {
        assert_eq!(parse_times(b"0 5\n3 7\n12 1x\n9\n20 9"), [(0, 5), (3, 7), (20, 9)]);
    }

    #[test]
    fn a_failing_write_is_counted_and_draining_goes_on() {
        // /dev/full fails every write with ENOSPC, as a full disk does.
        let mut s = LogSink::new(PathBuf::from("/dev/full"), 1 << 20).unwrap();
        // More than a pipe holds: the drain must keep emptying it.
        for _ in 0..40 {
            nix::unistd::write(s.writer(), &[b'x'; 1023]).unwrap();
            nix::unistd::write(s.writer(), b"\n").unwrap();
            s.drain().unwrap();
        }
        let (n, e) = s.dropped();
        assert_eq!(n, 40);
        assert_eq!(e, Some("No space left on device"));
    }

    #[test]
    fn a_missing_folder_drops_lines_until_it_exists() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("logs/svc.log");
        let mut s = LogSink::new(p.clone(), 1 << 20).unwrap();
        nix::unistd::write(s.writer(), b"lost\n").unwrap();
        s.drain().unwrap();
        assert_eq!(s.dropped().0, 1);
        std::fs::create_dir(d.path().join("logs")).unwrap();
        nix::unistd::write(s.writer(), b"kept\n").unwrap();
        s.drain().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "kept\n");
        assert_eq!(s.dropped().0, 1);
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
