//! The control socket: one JSON line in (a `ControlRequest`), one JSON line out (a
//! `ControlReply`), then the connection closes.
//!
//! Invariant: a client can never stall the supervisor: connections are non-blocking
//! while a request is read, requests are capped at `MAX_REQUEST` bytes, at most
//! `MAX_CONNS` connections are open, and a reply write gives up after a short timeout.
//! A connection keeps its peer's credentials (`SO_PEERCRED`, taken at accept) and the
//! first file descriptor that came with its request (`SCM_RIGHTS`, close-on-exec; any
//! other is closed at once): `reconfigure` takes its new configuration from there
//! and authenticates the sender by the credentials (see `engine`).

use super::{ControlReply, SupervisorError};
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, UnixCredentials};
use std::io::{self, BufRead, BufReader, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

/// Room for a `wait` naming many services.
pub const MAX_REQUEST: usize = 64 << 10;
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
    /// Who connected (`None` when the kernel would not say).
    peer: Option<UnixCredentials>,
    /// The first fd passed with the request.
    fd: Option<OwnedFd>,
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
        let peer = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials).ok();
        Ok(Conn { stream, buf: Vec::new(), peer, fd: None })
    }

    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// The credentials of the process that connected, as the kernel recorded them at
    /// `connect` and translates them into our namespaces: a pid our pid namespace
    /// cannot see is 0.
    pub fn peer(&self) -> Option<UnixCredentials> {
        self.peer
    }

    /// The fd that came with the request, if any.
    pub fn take_fd(&mut self) -> Option<OwnedFd> {
        self.fd.take()
    }

    /// One `recvmsg`: data into `chunk`, a passed fd kept (the first) or closed.
    fn recv(&mut self, chunk: &mut [u8]) -> io::Result<usize> {
        let mut cmsg = nix::cmsg_space!([RawFd; 4]);
        let mut iov = [IoSliceMut::new(chunk)];
        let msg = nix::sys::socket::recvmsg::<()>(
            self.stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)?;
        let n = msg.bytes;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    for fd in fds {
                        // SAFETY: the kernel just installed this fd for us; nothing else owns it.
                        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                        if self.fd.is_none() {
                            self.fd = Some(fd);
                        }
                    }
                }
            }
        }
        Ok(n)
    }

    pub fn read(&mut self) -> Input {
        let mut chunk = [0u8; 256];
        loop {
            match self.recv(&mut chunk) {
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
    pub fn reply(self, value: &ControlReply) {
        let mut line = serde_json::to_string(value).unwrap_or_else(|_| r#"{"ok":false}"#.into());
        line.push('\n');
        if self.stream.set_nonblocking(false).is_ok()
            && self.stream.set_write_timeout(Some(Duration::from_millis(200))).is_ok()
        {
            // MSG_NOSIGNAL: a client gone away is EPIPE here, never a SIGPIPE to PID 1.
            let mut rest = line.as_bytes();
            while !rest.is_empty() {
                match nix::sys::socket::send(self.stream.as_raw_fd(), rest, MsgFlags::MSG_NOSIGNAL) {
                    Ok(0) => return,
                    Ok(n) => rest = &rest[n..],
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => return,
                }
            }
        }
    }
}

/// Client side: sends `request` to the supervisor whose process is `pid` and reads the
/// one-line JSON reply. `control.sock` is opened beneath `run_dir` as an `O_PATH` fd
/// (no symlink followed: the run folder is the container's) and connected to through
/// `/proc/self/fd/<fd>`; the listening process must be `pid` (`SO_PEERCRED`, which the
/// kernel records at `listen` and gives in our pid namespace), so neither a socket the
/// container made nor another container's answers.
pub fn request(
    run_dir: &Path,
    pid: i32,
    request: &str,
    pass: Option<BorrowedFd<'_>>,
    timeout: Duration,
) -> Result<ControlReply, SupervisorError> {
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
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    let line = format!("{}\n", request.trim());
    match pass {
        None => s.write_all(line.as_bytes()).map_err(io)?,
        Some(pass) => {
            // The fd travels with the first byte; the line is far below a socket buffer.
            let raw = [pass.as_raw_fd()];
            let cmsg = [ControlMessage::ScmRights(&raw)];
            let n = nix::sys::socket::sendmsg::<()>(
                s.as_raw_fd(),
                &[IoSlice::new(line.as_bytes())],
                &cmsg,
                MsgFlags::empty(),
                None,
            )
            .map_err(|e| SupervisorError::sys(ctx(), e))?;
            s.write_all(&line.as_bytes()[n..]).map_err(io)?;
        }
    }
    let mut line = String::new();
    BufReader::new(s.take(64 << 20)).read_line(&mut line).map_err(io)?;
    serde_json::from_str(&line).map_err(|e| SupervisorError::Reply(format!("{e}: {line:?}")))
}
