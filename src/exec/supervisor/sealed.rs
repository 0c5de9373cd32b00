//! The supervisor's configuration as a sealed memfd: how the host hands it to PID 1
//! (at [`super::CONFIG_FD`]) and with a `reconfigure` (by `SCM_RIGHTS`).
//!
//! Invariant: a config fd is read only when it is a memfd sealed against every change
//! (`F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK`), a regular file of at most
//! [`MAX_CONFIG`] bytes, read with `pread` from offset 0: nobody can change it while
//! or after it is read, a FIFO or socket cannot hang the supervisor, and the fd's
//! file position (shared with the sender) does not matter.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// The largest configuration read from an fd (as `beneath::MAX_STATE_FILE`).
pub const MAX_CONFIG: u64 = 4 << 20;

/// The seals a config fd must carry.
const NEEDED: libc::c_int = libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK;

/// `bytes` in a new memfd named `name`, close-on-exec, sealed with `F_SEAL_WRITE |
/// F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL`.
pub fn seal(name: &std::ffi::CStr, bytes: &[u8]) -> io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated name and valid flags; returns a new fd or -1.
    let raw = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create just returned this fd, which nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut done = 0;
    while done < bytes.len() {
        let rest = &bytes[done..];
        // SAFETY: writes from a live slice to an fd we own.
        let n = unsafe { libc::write(fd.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    // SAFETY: fcntl on an fd we own, with plain integer arguments.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, NEEDED | libc::F_SEAL_SEAL) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// The whole content of a sealed memfd (see the module header); anything else is
/// refused with an error saying why.
pub fn read(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    // SAFETY: fcntl on a borrowed, open fd; no memory is passed.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    if seals < 0 || seals & NEEDED != NEEDED {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the configuration must come as a memfd sealed against writes, growing and shrinking",
        ));
    }
    // SAFETY: fstat writes into the zeroed stat we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "the configuration fd is not a regular file"));
    }
    let size = st.st_size as u64;
    if size > MAX_CONFIG {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the configuration is {size} bytes, more than {MAX_CONFIG}"),
        ));
    }
    // Sealed: the size cannot change after the fstat.
    let mut buf = vec![0u8; size as usize];
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: pread into a live, owned buffer of `rest.len()` bytes.
        let n = unsafe { libc::pread(fd.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len(), done as libc::off_t) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the configuration fd ended early"));
        }
        done += n as usize;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_sealed_memfd_reads_back_and_cannot_be_changed() {
        let fd = seal(c"t", b"{\"run_dir\":\"/x\"}").unwrap();
        assert_eq!(read(fd.as_fd()).unwrap(), b"{\"run_dir\":\"/x\"}");
        // SAFETY: write from a static buffer to an fd we own.
        let n = unsafe { libc::write(fd.as_raw_fd(), b"x".as_ptr().cast(), 1) };
        assert_eq!(n, -1, "a sealed memfd took a write");
    }

    #[test]
    fn an_unsealed_memfd_or_a_file_is_refused() {
        // SAFETY: a NUL-terminated name and valid flags.
        let raw = unsafe { libc::memfd_create(c"t".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(raw >= 0);
        // SAFETY: memfd_create just returned it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        assert!(read(fd.as_fd()).unwrap_err().to_string().contains("sealed"));
        let f = tempfile::tempfile().unwrap();
        assert!(read(f.as_fd()).unwrap_err().to_string().contains("sealed"));
    }
}
