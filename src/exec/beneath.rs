//! Host-side file access beneath a folder whose content the host does not trust.
//!
//! Invariant: a [`Beneath`] is a folder the host opened by its own path (the admin's
//! state root or cache, or a folder under it that only host root can rename or
//! replace); every path given to it is relative, made of plain names (no `..`, no
//! `.`, not absolute), and is resolved with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`, or, on a kernel without `openat2`
//! (`ENOSYS`), by a walk of `openat(O_NOFOLLOW)` one name at a time. So no symlink is
//! ever followed below the anchor, not even one that points back inside it, and
//! nothing outside it is reached. What is opened to be read or appended to must be a
//! regular file: it is opened with `O_NONBLOCK` (a FIFO cannot hang us) and `fstat`ed
//! before use; anything else is refused with an error that says what it is. Whole-file
//! reads are bounded ([`MAX_STATE_FILE`] for state files). Replacing a file goes
//! through a temp file of a random name created with `O_EXCL` (mode 0600 until it is
//! complete) in the same folder, fsync, `renameat`, fsync of the folder, so a planted
//! temp name is never written through.
//!
//! A second mode, [`Beneath::open_inner_links`], is for a folder the user gave but
//! whose content may come from anyone (the folder of a spec, e.g. a cloned
//! repository: `files.source`, hook scripts, `read_file`): there a symlink is followed
//! as long as it stays inside the folder (`openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS)`: an absolute target, or one that climbs out with `..`,
//! answers `EXDEV` and is refused), so `current -> v2/` keeps working. Without
//! `openat2` the walk follows no symlink at all (stricter, never looser). What is read
//! is looked up with `O_PATH` first and opened for reading only when it is a regular
//! file, so a device node's `open` (which may act) never happens. [`read_named`] reads
//! a file the user named by path (the spec itself): symlinks followed, the same
//! regular-files-only check, the same bounded read.
//!
//! Where it matters: each container's `run/` folder is bound read-write at
//! `/run/container` inside and belongs to the container's root, so everything below it
//! may be a symlink, FIFO, socket or folder of the container's choosing. The rest of
//! the state root and the cache are host root's alone (volumes are the container's
//! too, but the host reads nothing in them).

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::vocab::source::{SourceReader, MAX_SOURCE_BYTES};

/// The most a state file (JSON of the state root or cache, `status.json`) may hold:
/// 4 MiB, far beyond any real one; a bigger file is refused, never read into memory.
pub const MAX_STATE_FILE: u64 = 4 << 20;

/// A folder relative paths are resolved beneath, never following a symlink.
#[derive(Debug)]
pub struct Beneath {
    dir: OwnedFd,
    path: PathBuf,
    /// Follow symlinks that stay beneath the folder (see the module header).
    inner_links: bool,
}

/// The `struct open_how` of an `openat2(2)` call (libc's is non-exhaustive, so it
/// cannot be built with a struct expression). Async-signal-safe: the sandbox child
/// uses it between clone and exec.
pub(crate) fn open_how(flags: u64, mode: u64, resolve: u64) -> libc::open_how {
    // SAFETY: open_how is three u64 fields (and, in later kernels, more integers);
    // all-zero is a valid value of it.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags;
    how.mode = mode;
    how.resolve = resolve;
    how
}

/// `openat2(dir, path, how)`, retried while it answers `EAGAIN` (a rename elsewhere
/// on the system during the lookup) or `EINTR`; `ENOSYS` (a kernel before 5.6) is
/// returned like any other error, for the caller to decide.
pub(crate) fn openat2(dir: BorrowedFd<'_>, path: &std::ffi::CStr, how: &libc::open_how) -> io::Result<OwnedFd> {
    for _ in 0..16 {
        // SAFETY: valid pointers to a NUL-terminated path and a struct of the size
        // given; the returned fd is ours alone.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                path.as_ptr(),
                how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: a new fd owned by nobody else.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) });
        }
        let e = last_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => continue,
            _ => return Err(e),
        }
    }
    Err(io::Error::new(io::ErrorKind::Interrupted, "openat2 kept answering EAGAIN"))
}

/// Set once `openat2` answered `ENOSYS`: every later open walks.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

fn cstr(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a file name"))
}

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// The names of `rel`, or an error when it is not a plain relative path.
fn names(rel: &Path) -> io::Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n.as_bytes()),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: not a plain relative path (no `..`, `.` or leading `/` allowed)", rel.display()),
                ))
            }
        }
    }
    if out.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "an empty path"));
    }
    Ok(out)
}

/// `openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC, mode)` of one plain name.
fn openat_one(dir: BorrowedFd<'_>, name: &[u8], flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: a valid fd and a NUL-terminated name; the returned fd is ours alone.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags | libc::O_NOFOLLOW | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        return Err(last_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Open `rel` beneath `dir` without following any symlink, or with `inner_links`
/// following those that stay beneath `dir` (see the module header).
fn open_beneath(
    dir: BorrowedFd<'_>,
    rel: &Path,
    flags: libc::c_int,
    mode: u32,
    inner_links: bool,
) -> io::Result<OwnedFd> {
    let parts = names(rel)?;
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let c = cstr(rel.as_os_str().as_bytes())?;
        let (nofollow, resolve) = if inner_links {
            (0, libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS)
        } else {
            (libc::O_NOFOLLOW, libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS)
        };
        let how = open_how(
            (flags | nofollow | libc::O_CLOEXEC) as u64,
            if flags & libc::O_CREAT != 0 { mode as u64 } else { 0 },
            resolve,
        );
        match openat2(dir, &c, &how) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
            Err(e) => return Err(e),
        }
    }
    // The walk: every folder on the way opened with O_NOFOLLOW | O_DIRECTORY, so a
    // symlink there fails (ELOOP or ENOTDIR), and the last name with O_NOFOLLOW.
    let (last, folders) = parts.split_last().expect("names() is never empty");
    let mut cur: Option<OwnedFd> = None;
    for name in folders {
        let at = cur.as_ref().map(|f| f.as_fd()).unwrap_or(dir);
        let next = openat_one(at, name, libc::O_PATH | libc::O_DIRECTORY, 0).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOTDIR) {
                io::Error::from_raw_os_error(libc::ELOOP)
            } else {
                e
            }
        })?;
        cur = Some(next);
    }
    let at = cur.as_ref().map(|f| f.as_fd()).unwrap_or(dir);
    openat_one(at, last, flags, mode)
}

/// Why a file of kind `t` is refused, as words.
fn kind_word(t: std::fs::FileType) -> &'static str {
    if t.is_symlink() {
        "a symlink"
    } else if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device node"
    } else if t.is_file() {
        "a regular file"
    } else {
        "of an unknown kind"
    }
}

/// An open error in words: a symlink on the way is the one a reader needs explained.
fn explain(e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) => io::Error::new(
            io::ErrorKind::InvalidData,
            "it, or a folder on the way, is a symlink: refused (the host follows no symlink here)",
        ),
        Some(libc::ENOTDIR) => io::Error::new(
            io::ErrorKind::InvalidData,
            "a name on the way is a symlink or not a folder: refused (the host follows no symlink here)",
        ),
        Some(libc::EXDEV) => io::Error::new(io::ErrorKind::InvalidData, "it leads outside its folder: refused"),
        Some(libc::ENXIO) => io::Error::new(io::ErrorKind::InvalidData, "not a regular file (a FIFO): refused"),
        _ => e,
    }
}

fn not_regular(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("not a regular file ({what}): refused"))
}

/// Read `f` to its end, at most `limit` bytes: the size `fstat` gives is used for a
/// clear early refusal only, never trusted (it is 0 for a device, and a file may grow).
fn read_bounded(f: File, limit: u64) -> io::Result<Vec<u8>> {
    let len = f.metadata()?.len();
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{len} bytes, more than the {limit} allowed: refused"),
        ));
    }
    let mut buf = Vec::with_capacity(len as usize);
    f.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("more than the {limit} bytes allowed: refused"),
        ));
    }
    Ok(buf)
}

/// The whole of the file the user named at `path` (symlinks followed: the user chose
/// the path), at most `limit` bytes; anything but a regular file is refused without
/// being opened for reading (looked up with `O_PATH` first), and the file opened is
/// checked again (`O_NONBLOCK`, so a FIFO swapped in cannot hang us).
pub fn read_named(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let look = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH).open(path)?;
    let t = look.metadata()?.file_type();
    if !t.is_file() {
        return Err(not_regular(kind_word(t)));
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(explain)?;
    read_bounded(regular(OwnedFd::from(f))?, limit)
}

/// `fd` as a `File` if it is a regular file.
fn regular(fd: OwnedFd) -> io::Result<File> {
    let f = File::from(fd);
    let t = f.metadata()?.file_type();
    if !t.is_file() {
        return Err(not_regular(kind_word(t)));
    }
    // The O_NONBLOCK that kept a FIFO from hanging the open has no use any more.
    // SAFETY: F_GETFL/F_SETFL on an fd we own.
    unsafe {
        let fl = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        if fl >= 0 && fl & libc::O_NONBLOCK != 0 {
            libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
    }
    Ok(f)
}

fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

impl Beneath {
    /// Open the folder `dir` by its path (which the host trusts: every folder on the
    /// way is the admin's or host root's).
    pub fn open(dir: &Path) -> io::Result<Beneath> {
        // O_PATH: only search permission is needed, as for opening a file by path.
        let c = cstr(dir.as_os_str().as_bytes())?;
        // SAFETY: a NUL-terminated path; the returned fd is ours alone.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if fd < 0 {
            let e = last_error();
            return Err(io::Error::new(e.kind(), format!("cannot open the folder {}: {e}", dir.display())));
        }
        // SAFETY: a new fd owned by nobody else.
        Ok(Beneath { dir: unsafe { OwnedFd::from_raw_fd(fd) }, path: dir.to_path_buf(), inner_links: false })
    }

    /// Open the folder `dir` by its path, following the symlinks below it that stay
    /// inside it (see the module header): for the spec's folder.
    pub fn open_inner_links(dir: &Path) -> io::Result<Beneath> {
        Ok(Beneath { inner_links: true, ..Beneath::open(dir)? })
    }

    /// The folder's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Open `rel` for reading; `None` when it does not exist. Refuses a symlink on the
    /// way and anything but a regular file (a FIFO does not hang the open).
    pub fn open_read(&self, rel: &Path) -> io::Result<Option<File>> {
        // Looked up first without opening it, so a device node is never opened.
        let look = match open_beneath(self.dir.as_fd(), rel, libc::O_PATH, 0, self.inner_links) {
            Ok(fd) => File::from(fd),
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(explain(e)),
        };
        let t = look.metadata()?.file_type();
        if !t.is_file() {
            return Err(not_regular(kind_word(t)));
        }
        let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY;
        let fd = match open_beneath(self.dir.as_fd(), rel, flags, 0, self.inner_links) {
            Ok(fd) => fd,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(explain(e)),
        };
        regular(fd).map(Some)
    }

    /// The whole of `rel` (see [`Beneath::open_read`]), refused when larger than `limit`.
    pub fn read(&self, rel: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
        let Some(f) = self.open_read(rel)? else { return Ok(None) };
        read_bounded(f, limit).map(Some)
    }

    /// At most the last `limit` bytes of `rel` (see [`Beneath::open_read`]).
    pub fn read_tail(&self, rel: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
        let Some(mut f) = self.open_read(rel)? else { return Ok(None) };
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(limit)))?;
        let mut buf = Vec::new();
        f.take(limit).read_to_end(&mut buf)?;
        Ok(Some(buf))
    }

    /// Open `rel` for appending, created with `mode` when missing; refuses a symlink
    /// (`O_NOFOLLOW | O_CREAT`) on the way or as the file, and anything but a regular
    /// file. The folders on the way must exist.
    pub fn open_append(&self, rel: &Path, mode: u32) -> io::Result<File> {
        let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_NONBLOCK | libc::O_NOCTTY;
        let fd = open_beneath(self.dir.as_fd(), rel, flags, mode, self.inner_links).map_err(explain)?;
        regular(fd)
    }

    /// Open the folder `rel` (read-only, for `fchown`, `fchmod` and `fstat`); `None`
    /// when it does not exist. Refuses a symlink on the way or as `rel` itself, and
    /// anything but a folder.
    pub fn open_dir(&self, rel: &Path) -> io::Result<Option<File>> {
        match open_beneath(self.dir.as_fd(), rel, libc::O_RDONLY | libc::O_DIRECTORY, 0, self.inner_links) {
            Ok(fd) => Ok(Some(File::from(fd))),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(explain(e)),
        }
    }

    /// Make the folders of `rel` that are missing (mode 0777 less the umask, as
    /// `create_dir_all`); refuses one on the way that is a symlink or not a folder.
    pub fn create_dirs(&self, rel: &Path) -> io::Result<()> {
        let mut cur: Option<OwnedFd> = None;
        for name in names(rel)? {
            let at = cur.as_ref().map(|f| f.as_fd()).unwrap_or(self.dir.as_fd());
            let c = cstr(name)?;
            // SAFETY: a valid fd and a NUL-terminated name. mkdirat never follows a
            // symlink in the last name (it answers EEXIST).
            if unsafe { libc::mkdirat(at.as_raw_fd(), c.as_ptr(), 0o777) } != 0 {
                let e = last_error();
                if e.kind() != io::ErrorKind::AlreadyExists {
                    return Err(e);
                }
            }
            let next =
                openat_one(at, name, libc::O_PATH | libc::O_DIRECTORY, 0).map_err(|e| match e.raw_os_error() {
                    Some(libc::ENOTDIR) | Some(libc::ELOOP) => io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} is a symlink or not a folder: refused", String::from_utf8_lossy(name)),
                    ),
                    _ => e,
                })?;
            cur = Some(next);
        }
        Ok(())
    }

    /// Replace `rel` with `bytes` (mode `mode`), atomically: a temp file of a random
    /// name made with `O_EXCL` in the same folder, fsync, `renameat` over `rel`, fsync
    /// of the folder. The folder must exist; a symlink on the way is refused, and a
    /// symlink at `rel` itself is replaced, never followed.
    pub fn write_atomic(&self, rel: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        self.replace(rel, bytes, mode, true)
    }

    /// [`Beneath::write_atomic`] without either fsync: readers still see the old or
    /// the new file only, but a power cut may leave the old one (or, on some
    /// filesystems, an empty one). For files that describe the present run only,
    /// which a reboot makes stale anyway (`run.json`).
    pub fn write_volatile(&self, rel: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        self.replace(rel, bytes, mode, false)
    }

    fn replace(&self, rel: &Path, bytes: &[u8], mode: u32, durable: bool) -> io::Result<()> {
        let parts = names(rel)?;
        let (last, _) = parts.split_last().expect("names() is never empty");
        let folder = match rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => open_beneath(self.dir.as_fd(), p, libc::O_RDONLY | libc::O_DIRECTORY, 0, self.inner_links)
                .map_err(explain)?,
            None => openat_one(self.dir.as_fd(), b".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?,
        };
        let mut rnd = [0u8; 8];
        super::random::fill(&mut rnd)?;
        let mut tmp = b".".to_vec();
        tmp.extend_from_slice(last);
        tmp.push(b'.');
        for b in rnd {
            tmp.extend_from_slice(format!("{b:02x}").as_bytes());
        }
        tmp.extend_from_slice(b".tmp");
        let fd = openat_one(folder.as_fd(), &tmp, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o600)?;
        let tmp_c = cstr(&tmp)?;
        let unlink_tmp = || {
            // SAFETY: a valid folder fd and a NUL-terminated name.
            unsafe { libc::unlinkat(folder.as_raw_fd(), tmp_c.as_ptr(), 0) };
        };
        let mut f = File::from(fd);
        let written = f
            .write_all(bytes)
            .and_then(|_| if mode != 0o600 { f.set_permissions(std::fs::Permissions::from_mode(mode)) } else { Ok(()) })
            .and_then(|_| if durable { f.sync_all() } else { Ok(()) });
        drop(f);
        if let Err(e) = written {
            unlink_tmp();
            return Err(e);
        }
        let last_c = cstr(last)?;
        // SAFETY: a valid folder fd and NUL-terminated names; renameat replaces the
        // name `last` in that folder and follows nothing.
        if unsafe { libc::renameat(folder.as_raw_fd(), tmp_c.as_ptr(), folder.as_raw_fd(), last_c.as_ptr()) } != 0 {
            let e = last_error();
            unlink_tmp();
            return Err(e);
        }
        if durable {
            // SAFETY: fsync of a folder fd we own (opened for reading).
            unsafe { libc::fsync(folder.as_raw_fd()) };
        }
        Ok(())
    }

    /// An `O_PATH` fd of the unix socket `rel` (never through a symlink), to connect
    /// to by `/proc/self/fd/<fd>`.
    pub fn open_socket(&self, rel: &Path) -> io::Result<OwnedFd> {
        let fd = open_beneath(self.dir.as_fd(), rel, libc::O_PATH, 0, self.inner_links).map_err(explain)?;
        let f = File::from(fd);
        let t = f.metadata()?.file_type();
        if !t.is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a socket ({}): refused", kind_word(t)),
            ));
        }
        Ok(OwnedFd::from(f))
    }
}

/// The reader of files next to a spec (`files.source`, hook scripts, `read_file`):
/// relative paths beneath the spec's folder, symlinks followed only while they stay
/// inside it, regular files only, at most [`MAX_SOURCE_BYTES`], UTF-8 text.
pub struct SpecFolder(pub PathBuf);

impl SourceReader for SpecFolder {
    fn read(&self, rel: &str) -> Result<String, String> {
        let outside = || format!("`{rel}` is outside the spec's folder");
        let mut clean = PathBuf::new();
        for c in Path::new(rel).components() {
            match c {
                Component::Normal(n) => clean.push(n),
                Component::CurDir => {}
                _ => return Err(outside()),
            }
        }
        if clean.as_os_str().is_empty() {
            return Err(format!("`{rel}` names no file"));
        }
        let shown = self.0.join(&clean);
        let shown = shown.display();
        let dir = if self.0.as_os_str().is_empty() { Path::new(".") } else { self.0.as_path() };
        let folder = Beneath::open_inner_links(dir).map_err(|e| format!("cannot read {shown}: {e}"))?;
        let bytes = match folder.read(&clean, MAX_SOURCE_BYTES) {
            Ok(Some(b)) => b,
            Ok(None) => return Err(format!("cannot read {shown}: no such file")),
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) || e.to_string().contains("outside its folder") => {
                return Err(format!("cannot read {shown}: it leads outside the spec's folder: refused"))
            }
            Err(e) => return Err(format!("cannot read {shown}: {e}")),
        };
        String::from_utf8(bytes).map_err(|_| format!("{shown} is not UTF-8 text"))
    }
}

/// The anchor for a file at `path`: its folder, opened by path; and its name.
pub fn split(path: &Path) -> io::Result<(Beneath, PathBuf)> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{}: not the path of a file", path.display()))
    })?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Ok((Beneath::open(dir)?, PathBuf::from(name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, Beneath, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let inner = d.path().join("in");
        std::fs::create_dir_all(inner.join("sub")).unwrap();
        std::fs::write(inner.join("sub/ok"), "fine").unwrap();
        let outside = d.path().join("outside");
        std::fs::write(&outside, "host").unwrap();
        let b = Beneath::open(&inner).unwrap();
        (d, b, outside)
    }

    fn refused(r: io::Result<impl std::fmt::Debug>, word: &str) {
        let e = r.expect_err("must be refused");
        assert!(e.to_string().contains(word), "{e}");
    }

    #[test]
    fn reads_regular_files_and_refuses_symlinks_fifos_and_escapes() {
        let (d, b, outside) = setup();
        let inner = d.path().join("in");
        assert_eq!(b.read(Path::new("sub/ok"), 100).unwrap().unwrap(), b"fine");
        assert!(b.read(Path::new("sub/missing"), 100).unwrap().is_none());
        symlink(&outside, inner.join("link")).unwrap();
        refused(b.read(Path::new("link"), 100), "symlink");
        // Even a symlink that stays inside is not followed.
        symlink("sub", inner.join("dirlink")).unwrap();
        refused(b.read(Path::new("dirlink/ok"), 100), "symlink");
        nix::unistd::mkfifo(&inner.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        refused(b.read(Path::new("fifo"), 100), "FIFO");
        refused(b.read(Path::new("sub"), 100), "folder");
        refused(b.read(Path::new("../outside"), 100), "plain relative");
        refused(b.read(Path::new("/etc/passwd"), 100), "plain relative");
        refused(b.read(Path::new("sub/ok"), 3), "more than");
        assert_eq!(b.read_tail(Path::new("sub/ok"), 2).unwrap().unwrap(), b"ne");
        refused(b.open_append(Path::new("link"), 0o600), "symlink");
        refused(b.open_append(Path::new("fifo"), 0o600), "FIFO");
        refused(b.open_socket(Path::new("sub/ok")), "not a socket");
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "host");
    }

    #[test]
    fn the_walk_refuses_what_openat2_refuses() {
        let (d, b, outside) = setup();
        let inner = d.path().join("in");
        symlink(&outside, inner.join("link")).unwrap();
        symlink("sub", inner.join("dirlink")).unwrap();
        let walk = |rel: &str| open_beneath(b.dir.as_fd(), Path::new(rel), libc::O_RDONLY, 0, false).map(|_| ());
        NO_OPENAT2.store(true, Ordering::Relaxed);
        let results = (walk("sub/ok"), walk("link"), walk("dirlink/ok"));
        NO_OPENAT2.store(false, Ordering::Relaxed);
        results.0.unwrap();
        assert_eq!(results.1.unwrap_err().raw_os_error(), Some(libc::ELOOP));
        assert_eq!(results.2.unwrap_err().raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn atomic_writes_never_write_through_a_planted_temp_name_or_symlink() {
        let (d, b, outside) = setup();
        let inner = d.path().join("in");
        symlink(&outside, inner.join(".state.json.tmp")).unwrap();
        symlink(&outside, inner.join("state.json")).unwrap();
        b.write_atomic(Path::new("state.json"), b"new", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "host");
        let m = std::fs::symlink_metadata(inner.join("state.json")).unwrap();
        assert!(m.is_file() && m.permissions().mode() & 0o777 == 0o644);
        assert_eq!(std::fs::read_to_string(inner.join("state.json")).unwrap(), "new");
        b.write_atomic(Path::new("sub/x"), b"y", 0o600).unwrap();
        let left: Vec<_> = std::fs::read_dir(inner.join("sub")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "a temp file was left: {left:?}");
        symlink(d.path(), inner.join("up")).unwrap();
        refused(b.write_atomic(Path::new("up/outside"), b"z", 0o600), "symlink");
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "host");
    }

    #[test]
    fn create_dirs_refuses_a_symlinked_folder() {
        let (d, b, _) = setup();
        let inner = d.path().join("in");
        b.create_dirs(Path::new("a/b")).unwrap();
        assert!(inner.join("a/b").is_dir());
        symlink(d.path(), inner.join("up")).unwrap();
        refused(b.create_dirs(Path::new("up/new")), "symlink");
        assert!(!d.path().join("new").exists());
    }

    #[test]
    fn inner_links_mode_refuses_links_out_devices_and_fifos() {
        // Only refusals here: `the_walk_refuses_what_openat2_refuses` flips the walk on
        // for a moment, and the walk follows no symlink at all (tests/broken.rs shows an
        // inner symlink followed, in a process of its own).
        let (d, _, outside) = setup();
        let inner = d.path().join("in");
        let b = Beneath::open_inner_links(&inner).unwrap();
        assert_eq!(b.read(Path::new("sub/ok"), 100).unwrap().unwrap(), b"fine");
        symlink(&outside, inner.join("link")).unwrap();
        refused(b.read(Path::new("link"), 100), "refused");
        symlink("../outside", inner.join("climb")).unwrap();
        refused(b.read(Path::new("climb"), 100), "refused");
        symlink("/dev/zero", inner.join("zero")).unwrap();
        refused(b.read(Path::new("zero"), 100), "refused");
        nix::unistd::mkfifo(&inner.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        refused(b.read(Path::new("fifo"), 100), "FIFO");
        refused(b.read(Path::new("sub"), 100), "folder");
        refused(b.read(Path::new("../outside"), 100), "plain relative");
    }

    #[test]
    fn read_named_reads_regular_files_only_and_bounded() {
        let (d, _, outside) = setup();
        let inner = d.path().join("in");
        assert_eq!(read_named(&outside, 100).unwrap(), b"host");
        refused(read_named(&outside, 3), "more than");
        refused(read_named(Path::new("/dev/zero"), 100), "a device node");
        symlink("/dev/zero", inner.join("zero")).unwrap();
        refused(read_named(&inner.join("zero"), 100), "a device node");
        nix::unistd::mkfifo(&inner.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        refused(read_named(&inner.join("fifo"), 100), "a FIFO");
        refused(read_named(&inner, 100), "a folder");
    }

    #[test]
    fn the_spec_folder_reader_stays_inside() {
        let (d, _, _) = setup();
        let inner = d.path().join("in");
        let r = SpecFolder(inner.clone());
        assert_eq!(r.read("./sub/ok").unwrap(), "fine");
        for bad in ["../outside", "/etc/passwd", "sub/../../outside"] {
            let e = r.read(bad).unwrap_err();
            assert!(e.contains("outside the spec's folder"), "{bad}: {e}");
        }
        std::fs::write(inner.join("bin"), [0xff, 0xfe]).unwrap();
        assert!(r.read("bin").unwrap_err().contains("not UTF-8"));
        assert!(r.read("missing").unwrap_err().contains("no such file"));
    }
}
