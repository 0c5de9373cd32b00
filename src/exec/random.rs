//! Randomness from the kernel's CSPRNG (getrandom(2)), for generated secrets.

/// Fill `buf` with random bytes; returns how many were written (getrandom may return
/// fewer than asked; an interrupted call is retried).
pub fn fill(buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        // SAFETY: getrandom writes at most `buf.len()` bytes into the buffer it is given.
        let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
