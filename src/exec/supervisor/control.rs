//! The control socket: one line in, one JSON line out, then the connection closes.
//!
//! Invariant: a client can never stall the supervisor: connections are non-blocking
//! while a request is read, requests are capped at `MAX_REQUEST` bytes, at most
//! `MAX_CONNS` connections are open, and a reply write gives up after a short timeout.

use super::SupervisorError;
use std::io::{self, BufRead, BufReader, Read, Write};
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

/// Client side: sends `request` and reads the one-line JSON reply.
pub fn request(path: &Path, request: &str) -> Result<serde_json::Value, SupervisorError> {
    let ctx = || format!("control socket {}", path.display());
    let mut s = UnixStream::connect(path).map_err(|e| SupervisorError::io(ctx(), e))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| SupervisorError::io(ctx(), e))?;
    s.write_all(format!("{}\n", request.trim()).as_bytes()).map_err(|e| SupervisorError::io(ctx(), e))?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).map_err(|e| SupervisorError::io(ctx(), e))?;
    serde_json::from_str(&line).map_err(|e| SupervisorError::Reply(format!("{e}: {line:?}")))
}
