//! The control socket: one line in, one JSON line out, then the connection closes.
//!
//! Invariant: a client can never stall the supervisor: connections are non-blocking
//! while a request is read, requests are capped at `MAX_REQUEST` bytes, at most
//! `MAX_CONNS` connections are open, and a reply write gives up after a short timeout.

use super::SupervisorError;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

pub const MAX_REQUEST: usize = 512;
pub const MAX_CONNS: usize = 16;

pub fn listen(path: &Path) -> io::Result<UnixListener> {
    // A socket left by a previous run would make bind fail.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

pub struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
}

pub enum Input {
    /// Nothing complete yet.
    More,
    /// A request line (without the newline); empty when it was too long or not UTF-8.
    Line(String),
    /// The client went away without a request.
    Closed,
}

impl Conn {
    pub fn new(stream: UnixStream) -> io::Result<Conn> {
        stream.set_nonblocking(true)?;
        Ok(Conn { stream, buf: Vec::new() })
    }

    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    pub fn read(&mut self) -> Input {
        let mut chunk = [0u8; 256];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) if self.buf.is_empty() => return Input::Closed,
                Ok(0) => return self.line(self.buf.len()),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                        return self.line(i);
                    }
                    if self.buf.len() > MAX_REQUEST {
                        return Input::Line(String::new());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Input::More,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Input::Closed,
            }
        }
    }

    fn line(&self, end: usize) -> Input {
        Input::Line(std::str::from_utf8(&self.buf[..end]).map(|s| s.trim().to_string()).unwrap_or_default())
    }

    /// Writes the reply and closes the connection. Errors are the client's problem.
    pub fn reply(mut self, value: &serde_json::Value) {
        let mut line = value.to_string();
        line.push('\n');
        if self.stream.set_nonblocking(false).is_ok()
            && self.stream.set_write_timeout(Some(Duration::from_millis(200))).is_ok()
        {
            let _ = self.stream.write_all(line.as_bytes());
        }
    }
}

/// Client side: sends `request` to the supervisor whose process is `pid` and reads the
/// one-line JSON reply. `control.sock` is opened beneath `run_dir` as an `O_PATH` fd
/// (no symlink followed: the run folder is the container's) and connected to through
/// `/proc/self/fd/<fd>`; the listening process must be `pid` (`SO_PEERCRED`, which the
/// kernel records at `listen` and gives in our pid namespace), so neither a socket the
/// container made nor another container's answers.
pub fn request(run_dir: &Path, pid: i32, request: &str) -> Result<serde_json::Value, SupervisorError> {
    let path = super::control_socket(run_dir);
    let ctx = || format!("control socket {}", path.display());
    let io = |e| SupervisorError::io(ctx(), e);
    let dir = crate::exec::beneath::Beneath::open(run_dir).map_err(io)?;
    let fd = dir.open_socket(Path::new("control.sock")).map_err(io)?;
    let mut s = UnixStream::connect(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(io)?;
    drop(fd);
    let peer = nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|e| SupervisorError::sys(ctx(), e))?;
    if peer.pid() != pid {
        return Err(SupervisorError::io(
            ctx(),
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("it is served by process {}, not by the supervisor (pid {pid}): refused", peer.pid()),
            ),
        ));
    }
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(io)?;
    s.write_all(format!("{}\n", request.trim()).as_bytes()).map_err(io)?;
    let mut line = String::new();
    BufReader::new(s.take(64 << 20)).read_line(&mut line).map_err(io)?;
    serde_json::from_str(&line).map_err(|e| SupervisorError::Reply(format!("{e}: {line:?}")))
}
