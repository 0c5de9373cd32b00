//! Unpacking a tarball into a layer, in process, beneath the layer's root.
//!
//! Invariant: every path is resolved relative to the layer root's fd with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`, so a symlink
//! already in the layer or made by an earlier member resolves inside the layer,
//! exactly as in a chroot, and never reaches a host path, a magic link of `/proc` or
//! another mount (the `/proc`, `/tmp` and `/run` of a build command are not the
//! layer). Only the last name of a member is created, relative to its folder's fd
//! (`*at` calls, which never follow a symlink in that name), and never by opening an
//! existing file for writing: a file or symlink is made under a temp name of a random
//! name (`O_CREAT | O_EXCL | O_NOFOLLOW`) and renamed over the member's name.
//!
//! What a tarball may hold, and what becomes of it:
//! - Names: relative, `.` components dropped. An absolute name or one with a `..`
//!   component anywhere fails the whole unpack, with an error naming the member
//!   (never skipped: a tarball that tries it is not one to install half of). `strip`
//!   drops that many leading components, as GNU tar's `--strip-components` (`.`
//!   counts); a member left with no name (the destination itself, or one shorter than
//!   `strip`) is skipped. Hard-link targets are checked and stripped the same way.
//! - Folders: made as needed (`mkdir -p` beneath the root), their modes set once every
//!   member is in (mode & 0o777: no setgid or sticky bit). An existing folder, or a
//!   symlink resolving (inside the layer) to one, is kept as it is
//!   (`--no-overwrite-dir`).
//! - Files: mode & 0o777 (setuid, setgid and sticky bits cleared), owned by root:root
//!   when run as root (`--no-same-owner`), the member's mtime.
//! - Symlinks: made as given; their targets are only ever resolved inside the layer.
//! - Hard links: only to a file this same unpack made (checked by device and inode
//!   after an in-root lookup that follows no symlink in the last name).
//! - Character and block devices, FIFOs and kinds this code does not know fail the
//!   unpack, naming the member.
//! - Bounds: at most [`MAX_UNPACK_BYTES`] (4 GiB) read from the decompressed stream and
//!   as many written, and [`MAX_UNPACK_MEMBERS`] (a million) members; far beyond a real
//!   release (ownCloud's is ~70 MB in ~20 000 files).
//!
//! Compression is found by the magic bytes: gzip, bzip2, xz or zstd, all decoded in
//! process by pure-Rust crates (no host tool is run), or none (a plain tar).
//!
//! A kernel without `openat2` (before 5.6) cannot resolve in-root: the unpack is
//! refused there, never done another way.
//!
//! The build runs this as `container __unpack ROOT DEST STRIP` (see [`UNPACK_ARG`])
//! with the tarball on stdin, as a host program in the layer's mount namespace (see
//! `exec::build::unpack`).

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::beneath::{open_how, openat2};

/// The hidden CLI argument that runs the unpacker: `container __unpack ROOT DEST STRIP`.
pub const UNPACK_ARG: &str = "__unpack";

/// The most bytes read from the decompressed stream, and the most written: 4 GiB.
pub const MAX_UNPACK_BYTES: u64 = 4 << 30;

/// The most members one tarball may have.
pub const MAX_UNPACK_MEMBERS: u64 = 1_000_000;

/// The bounds of one unpack (see the module header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Bytes read from the decompressed stream, and bytes written to files.
    pub bytes: u64,
    /// Members (every header the archive yields).
    pub members: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits { bytes: MAX_UNPACK_BYTES, members: MAX_UNPACK_MEMBERS }
    }
}

/// What an unpack did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnpackReport {
    /// Members placed in the layer.
    pub members: u64,
    /// Bytes written to files.
    pub bytes: u64,
    /// Members skipped: their name was stripped away, or a pax global header.
    pub skipped: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("tarball member `{member}`: {why}")]
    Member { member: String, why: String },
    #[error("{0}")]
    Refused(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn member_err(name: &[u8], why: impl Into<String>) -> UnpackError {
    UnpackError::Member { member: String::from_utf8_lossy(name).into_owned(), why: why.into() }
}

/// The components of member `name` left after dropping `strip` leading ones (as GNU
/// tar's `--strip-components`, where `.` counts) and then the `.` ones; `None` when
/// nothing is left (the member is skipped). An empty, absolute or `..` name is an
/// error that says why.
pub fn member_path(name: &[u8], strip: u32) -> Result<Option<Vec<&[u8]>>, String> {
    if name.is_empty() {
        return Err("an empty name: refused".into());
    }
    if name[0] == b'/' {
        return Err("an absolute name: refused (names are relative to the destination)".into());
    }
    let comps: Vec<&[u8]> = name.split(|b| *b == b'/').filter(|c| !c.is_empty()).collect();
    if comps.iter().any(|c| *c == b"..") {
        return Err("a `..` component: refused (nothing may leave the destination)".into());
    }
    let rest: Vec<&[u8]> = comps.into_iter().skip(strip as usize).filter(|c| *c != b".").collect();
    Ok(if rest.is_empty() { None } else { Some(rest) })
}

/// The destination folder as components: absolute or relative to the layer root,
/// plain names only.
fn dest_path(dest: &str) -> Result<Vec<&[u8]>, UnpackError> {
    let comps: Vec<&[u8]> = dest.as_bytes().split(|b| *b == b'/').filter(|c| !c.is_empty() && *c != b".").collect();
    if comps.iter().any(|c| *c == b"..") {
        return Err(UnpackError::Refused(format!("unpack destination {dest} contains \"..\"")));
    }
    Ok(comps)
}

/// A reader that fails once more than `limit` bytes were read through it.
struct Bounded<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the tarball unpacks to more than {} bytes: refused", self.limit),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Which compression `magic` (the first bytes of a file) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Bzip2,
    Xz,
    Zstd,
    None,
}

impl Compression {
    pub fn of(magic: &[u8]) -> Compression {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(b"BZh") {
            Compression::Bzip2
        } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Compression::Xz
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// `input` decompressed by what its first bytes say (see [`Compression`]).
pub fn decompressed<'a>(mut input: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut magic = [0u8; 6];
    let mut got = 0;
    while got < magic.len() {
        match input.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    let head = io::Cursor::new(magic[..got].to_vec());
    let whole = io::BufReader::with_capacity(1 << 16, head.chain(input));
    Ok(match Compression::of(&magic[..got]) {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(whole)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(whole)),
        Compression::Xz => Box::new(lzma_rust2::XzReader::new(whole, true)),
        Compression::Zstd => Box::new(
            ruzstd::decoding::StreamingDecoder::new(whole)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}")))?,
        ),
        Compression::None => Box::new(whole),
    })
}

fn cstring(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a name"))
}

fn join(comps: &[&[u8]]) -> Vec<u8> {
    comps.join(&b'/')
}

fn errno() -> io::Error {
    io::Error::last_os_error()
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// The layer root and what this unpack made in it.
struct Layer {
    root: OwnedFd,
    as_root: bool,
    /// (device, inode) of every file this unpack made: the only hard-link targets.
    files: HashSet<(u64, u64)>,
    /// Folders this unpack made: (path from the root, mode, device, inode).
    dirs: Vec<(Vec<u8>, u32, u64, u64)>,
}

impl Layer {
    /// Resolve `rel` (from the layer root) in-root, with `flags` (plus `O_CLOEXEC`).
    fn resolve(&self, rel: &[u8], flags: libc::c_int) -> io::Result<OwnedFd> {
        let c = cstring(if rel.is_empty() { b"." } else { rel })?;
        let how = open_how(
            (flags | libc::O_CLOEXEC) as u64,
            0,
            libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_XDEV,
        );
        openat2(self.root.as_fd(), &c, &how).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOSYS) => io::Error::new(
                io::ErrorKind::Unsupported,
                "this kernel has no openat2 (Linux 5.6 or later): a tarball cannot be unpacked safely here",
            ),
            Some(libc::EXDEV) => {
                io::Error::new(io::ErrorKind::InvalidData, "it leads to another mount than the layer: refused")
            }
            Some(libc::ELOOP) => {
                io::Error::new(io::ErrorKind::InvalidData, "too many symlinks or a magic link: refused")
            }
            _ => e,
        })
    }

    /// The folder `comps` (from the root), made with its missing parents (mode 0755).
    fn mkdir_p(&mut self, comps: &[&[u8]]) -> io::Result<OwnedFd> {
        let mut cur = self.resolve(b"", libc::O_PATH | libc::O_DIRECTORY)?;
        for i in 0..comps.len() {
            let prefix = join(&comps[..=i]);
            cur = match self.resolve(&prefix, libc::O_PATH | libc::O_DIRECTORY) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let name = cstring(comps[i])?;
                    // SAFETY: a valid folder fd and a NUL-terminated name; mkdirat
                    // never follows a symlink in that name (it answers EEXIST).
                    if unsafe { libc::mkdirat(cur.as_raw_fd(), name.as_ptr(), 0o700) } != 0 {
                        let e = errno();
                        return Err(if e.kind() == io::ErrorKind::AlreadyExists {
                            io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!(
                                    "{} is a symlink to a missing folder: refused",
                                    String::from_utf8_lossy(&prefix)
                                ),
                            )
                        } else {
                            e
                        });
                    }
                    let fd = self.resolve(&prefix, libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW)?;
                    self.made_dir(&prefix, &fd, 0o755)?;
                    fd
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} is not a folder", String::from_utf8_lossy(&prefix)),
                    ))
                }
                Err(e) => return Err(e),
            };
        }
        Ok(cur)
    }

    fn made_dir(&mut self, rel: &[u8], fd: &OwnedFd, mode: u32) -> io::Result<()> {
        let m = File::from(fd.try_clone()?).metadata()?;
        self.dirs.push((rel.to_vec(), mode & 0o777, m.dev(), m.ino()));
        Ok(())
    }

    /// Give the folders this unpack made their modes (and root:root), now that
    /// everything is in them.
    fn finish_dirs(&mut self) -> Result<(), UnpackError> {
        for (rel, mode, dev, ino) in std::mem::take(&mut self.dirs).into_iter().rev() {
            let fail = |e: io::Error| member_err(&rel, format!("setting the folder's mode: {e}"));
            let f =
                File::from(self.resolve(&rel, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW).map_err(fail)?);
            let m = f.metadata().map_err(fail)?;
            if (m.dev(), m.ino()) != (dev, ino) {
                return Err(member_err(&rel, "the folder was replaced while unpacking: refused"));
            }
            if self.as_root {
                // SAFETY: fchown of an fd we own.
                check(unsafe { libc::fchown(f.as_raw_fd(), 0, 0) }).map_err(fail)?;
            }
            // SAFETY: fchmod of an fd we own.
            check(unsafe { libc::fchmod(f.as_raw_fd(), mode) }).map_err(fail)?;
        }
        Ok(())
    }
}

/// A temp name for a member being made in its folder.
fn temp_name() -> io::Result<CString> {
    let mut rnd = [0u8; 8];
    super::random::fill(&mut rnd)?;
    let hex: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
    cstring(format!(".container-unpack-{hex}").as_bytes())
}

/// Rename `tmp` over `name` in `dir`; `tmp` is removed when that fails.
fn place(dir: BorrowedFd<'_>, tmp: &CStr, name: &CStr) -> io::Result<()> {
    // SAFETY: a valid folder fd and NUL-terminated names; renameat follows nothing.
    let r = unsafe { libc::renameat(dir.as_raw_fd(), tmp.as_ptr(), dir.as_raw_fd(), name.as_ptr()) };
    if r != 0 {
        let e = errno();
        // SAFETY: as above; the temp name is ours.
        unsafe { libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0) };
        return Err(match e.raw_os_error() {
            Some(libc::EISDIR) | Some(libc::ENOTEMPTY) | Some(libc::EEXIST) => {
                io::Error::new(io::ErrorKind::InvalidData, "a folder of that name is in the way")
            }
            _ => e,
        });
    }
    Ok(())
}

/// Unpack the tar stream `input` (uncompressed: see [`decompressed`]) into `dest`
/// (made as needed) beneath the folder `root`, dropping `strip` leading components
/// of each name; see the module header for what is refused.
pub fn unpack_tar(
    root: &Path,
    dest: &str,
    strip: u32,
    input: impl Read,
    limits: UnpackLimits,
) -> Result<UnpackReport, UnpackError> {
    let dest_comps = dest_path(dest)?;
    let c = cstring(root.as_os_str().as_bytes())
        .map_err(|e| UnpackError::Io { context: root.display().to_string(), source: e })?;
    // SAFETY: a NUL-terminated path; the fd returned is ours alone. The root is the
    // host's own path (the layer's mount point), so it is opened by it.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(UnpackError::Io { context: format!("opening the layer root {}", root.display()), source: errno() });
    }
    // SAFETY: a new fd owned by nobody else.
    let root_fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: geteuid has no preconditions.
    let as_root = unsafe { libc::geteuid() } == 0;
    let mut layer = Layer { root: root_fd, as_root, files: HashSet::new(), dirs: Vec::new() };
    layer
        .mkdir_p(&dest_comps)
        .map_err(|e| UnpackError::Io { context: format!("making the destination {dest}"), source: e })?;

    let stream = Bounded { inner: input, left: limits.bytes, limit: limits.bytes };
    let mut archive = tar::Archive::new(stream);
    let mut report = UnpackReport::default();
    let mut seen = 0u64;
    let read_err = |e: io::Error| UnpackError::Io { context: "reading the tarball".into(), source: e };
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        seen += 1;
        if seen > limits.members {
            return Err(UnpackError::Refused(format!("the tarball has more than {} members: refused", limits.members)));
        }
        let name = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        use tar::EntryType as T;
        if matches!(kind, T::XGlobalHeader) {
            report.skipped += 1;
            continue;
        }
        let Some(comps) = member_path(&name, strip).map_err(|why| member_err(&name, why))? else {
            report.skipped += 1;
            continue;
        };
        let mut full = dest_comps.clone();
        full.extend(comps.iter().copied());
        let rel = join(&full);
        let (last, parent) = full.split_last().expect("member_path is never empty");
        let mode = entry.header().mode().map_err(|e| member_err(&name, format!("its mode: {e}")))? & 0o777;
        let at = |e: io::Error| member_err(&name, e.to_string());
        let pfd = match layer.resolve(&join(parent), libc::O_PATH | libc::O_DIRECTORY) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => layer.mkdir_p(parent).map_err(at)?,
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                return Err(member_err(&name, "a name on the way is not a folder"))
            }
            Err(e) => return Err(at(e)),
        };
        let cname = cstring(last).map_err(at)?;
        let is_dir = matches!(kind, T::Directory) || (matches!(kind, T::Regular) && name.ends_with(b"/"));
        if is_dir {
            // SAFETY: a valid folder fd and a NUL-terminated name; mkdirat follows no
            // symlink in the name.
            let mut r = unsafe { libc::mkdirat(pfd.as_raw_fd(), cname.as_ptr(), 0o700) };
            if r != 0 && errno().kind() == io::ErrorKind::AlreadyExists {
                // `--no-overwrite-dir`: a folder (or a symlink to one, inside the
                // layer) stays as it is; anything else is replaced by the folder.
                if layer.resolve(&rel, libc::O_PATH | libc::O_DIRECTORY).is_ok() {
                    report.members += 1;
                    continue;
                }
                // SAFETY: as above; unlinkat of a non-folder name follows nothing.
                check(unsafe { libc::unlinkat(pfd.as_raw_fd(), cname.as_ptr(), 0) }).map_err(at)?;
                // SAFETY: as above.
                r = unsafe { libc::mkdirat(pfd.as_raw_fd(), cname.as_ptr(), 0o700) };
            }
            check(r).map_err(at)?;
            let fd = layer.resolve(&rel, libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW).map_err(at)?;
            layer.made_dir(&rel, &fd, mode).map_err(at)?;
            report.members += 1;
            continue;
        }
        let tmp = temp_name().map_err(at)?;
        match kind {
            T::Regular | T::Continuous | T::GNUSparse => {
                // SAFETY: a valid folder fd and a NUL-terminated name; O_EXCL |
                // O_NOFOLLOW: a new file, never one that was there.
                let fd = unsafe {
                    libc::openat(
                        pfd.as_raw_fd(),
                        tmp.as_ptr(),
                        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                        0o600,
                    )
                };
                if fd < 0 {
                    return Err(at(errno()));
                }
                // SAFETY: a new fd owned by nobody else.
                let mut f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
                let left = limits.bytes - report.bytes;
                let written = (|| -> io::Result<u64> {
                    let n = io::copy(&mut (&mut entry).take(left + 1), &mut f)?;
                    if n > left {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("the tarball unpacks to more than {} bytes: refused", limits.bytes),
                        ));
                    }
                    if as_root {
                        // SAFETY: fchown of an fd we own.
                        check(unsafe { libc::fchown(f.as_raw_fd(), 0, 0) })?;
                    }
                    // After the chown (which would clear setuid bits anyway).
                    // SAFETY: fchmod of an fd we own.
                    check(unsafe { libc::fchmod(f.as_raw_fd(), mode) })?;
                    let mtime = entry.header().mtime().unwrap_or(0).min(i64::MAX as u64) as i64;
                    let times = [
                        libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT },
                        libc::timespec { tv_sec: mtime, tv_nsec: 0 },
                    ];
                    // SAFETY: futimens of an fd we own with two timespecs.
                    check(unsafe { libc::futimens(f.as_raw_fd(), times.as_ptr()) })?;
                    let m = f.metadata()?;
                    layer.files.insert((m.dev(), m.ino()));
                    Ok(n)
                })();
                drop(f);
                let n = match written {
                    Ok(n) => n,
                    Err(e) => {
                        // SAFETY: unlinkat of our own temp name.
                        unsafe { libc::unlinkat(pfd.as_raw_fd(), tmp.as_ptr(), 0) };
                        return Err(at(e));
                    }
                };
                place(pfd.as_fd(), &tmp, &cname).map_err(at)?;
                report.bytes += n;
            }
            T::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| member_err(&name, "a symlink without a target"))?;
                if target.is_empty() {
                    return Err(member_err(&name, "a symlink with an empty target"));
                }
                let target = cstring(&target).map_err(at)?;
                // SAFETY: NUL-terminated strings and a valid folder fd; symlinkat
                // makes a new name and follows nothing.
                check(unsafe { libc::symlinkat(target.as_ptr(), pfd.as_raw_fd(), tmp.as_ptr()) }).map_err(at)?;
                if as_root {
                    // SAFETY: as above; AT_SYMLINK_NOFOLLOW changes the link itself.
                    let r = unsafe { libc::fchownat(pfd.as_raw_fd(), tmp.as_ptr(), 0, 0, libc::AT_SYMLINK_NOFOLLOW) };
                    if let Err(e) = check(r) {
                        // SAFETY: unlinkat of our own temp name.
                        unsafe { libc::unlinkat(pfd.as_raw_fd(), tmp.as_ptr(), 0) };
                        return Err(at(e));
                    }
                }
                place(pfd.as_fd(), &tmp, &cname).map_err(at)?;
            }
            T::Link => {
                let target =
                    entry.link_name_bytes().ok_or_else(|| member_err(&name, "a hard link without a target"))?;
                let shown = String::from_utf8_lossy(&target).into_owned();
                let tcomps = member_path(&target, strip)
                    .map_err(|why| member_err(&name, format!("its hard-link target `{shown}`: {why}")))?
                    .ok_or_else(|| member_err(&name, format!("its hard-link target `{shown}` is stripped away")))?;
                let mut tfull = dest_comps.clone();
                tfull.extend(tcomps);
                let not_ours = || {
                    member_err(
                        &name,
                        format!("a hard link to `{shown}`, which is not a file this tarball unpacked: refused"),
                    )
                };
                let tfd = layer.resolve(&join(&tfull), libc::O_PATH | libc::O_NOFOLLOW).map_err(|_| not_ours())?;
                let m = File::from(tfd.try_clone().map_err(at)?).metadata().map_err(at)?;
                if !m.is_file() || !layer.files.contains(&(m.dev(), m.ino())) {
                    return Err(not_ours());
                }
                let by_fd = cstring(format!("/proc/self/fd/{}", tfd.as_raw_fd()).as_bytes()).map_err(at)?;
                // SAFETY: NUL-terminated strings and valid fds; the magic link names
                // exactly the file we opened and checked.
                let r = unsafe {
                    libc::linkat(libc::AT_FDCWD, by_fd.as_ptr(), pfd.as_raw_fd(), tmp.as_ptr(), libc::AT_SYMLINK_FOLLOW)
                };
                check(r).map_err(at)?;
                place(pfd.as_fd(), &tmp, &cname).map_err(at)?;
                // A rename onto another name of the same file does nothing: the temp
                // name would stay.
                // SAFETY: unlinkat of our own temp name (ENOENT when it is gone).
                unsafe { libc::unlinkat(pfd.as_raw_fd(), tmp.as_ptr(), 0) };
            }
            T::Char | T::Block => {
                return Err(member_err(&name, "a device node: refused (a layer gets no device nodes from a tarball)"))
            }
            T::Fifo => return Err(member_err(&name, "a FIFO: refused")),
            other => {
                return Err(member_err(&name, format!("an entry of type {:?}, which is not unpacked: refused", other)))
            }
        }
        report.members += 1;
    }
    layer.finish_dirs()?;
    Ok(report)
}

/// [`unpack_tar`] of a possibly compressed tarball (see [`decompressed`]).
pub fn unpack_tarball(
    root: &Path,
    dest: &str,
    strip: u32,
    input: impl Read,
    limits: UnpackLimits,
) -> Result<UnpackReport, UnpackError> {
    let stream =
        decompressed(input).map_err(|e| UnpackError::Io { context: "reading the tarball".into(), source: e })?;
    unpack_tar(root, dest, strip, stream, limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// One member, its header written raw (so `..`, absolute names and odd kinds go
    /// in as given, which the crate's builder would refuse).
    fn member(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, link: &str, mode: u32, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        let raw = h.as_mut_bytes();
        raw[..name.len()].copy_from_slice(name.as_bytes());
        raw[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_000_000);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }

    fn end(mut out: Vec<u8>) -> Vec<u8> {
        out.resize(out.len() + 1024, 0);
        out
    }

    fn file(out: &mut Vec<u8>, name: &str, mode: u32, data: &[u8]) {
        member(out, name, tar::EntryType::Regular, "", mode, data)
    }

    fn run(root: &Path, dest: &str, strip: u32, tar: &[u8]) -> Result<UnpackReport, UnpackError> {
        unpack_tarball(root, dest, strip, tar, UnpackLimits::default())
    }

    #[test]
    fn names_are_stripped_like_gnu_tar_and_escapes_refused() {
        let p = |n: &str, s| member_path(n.as_bytes(), s).map(|o| o.map(|v| join(&v)));
        assert_eq!(p("a/b/c", 0).unwrap().unwrap(), b"a/b/c");
        assert_eq!(p("a/b/c", 1).unwrap().unwrap(), b"b/c");
        assert_eq!(p("a//b/./c/", 1).unwrap().unwrap(), b"b/c");
        // `.` counts as a component when stripping, as in GNU tar.
        assert_eq!(p("./a/b", 1).unwrap().unwrap(), b"a/b");
        assert_eq!(p("a/", 1).unwrap(), None);
        assert_eq!(p("a", 2).unwrap(), None);
        assert_eq!(p("./", 0).unwrap(), None);
        assert!(p("../../x", 0).unwrap_err().contains("`..`"));
        assert!(p("a/../../x", 1).unwrap_err().contains("`..`"));
        assert!(p("../x", 1).unwrap_err().contains("`..`"), "refused even when stripped away");
        assert!(p("/abs/x", 0).unwrap_err().contains("absolute"));
        assert!(p("/abs/x", 1).unwrap_err().contains("absolute"));
        assert!(p("", 0).unwrap_err().contains("empty"));
        assert!(dest_path("/var/../etc").is_err());
        assert_eq!(join(&dest_path("/var/www/").unwrap()), b"var/www");
    }

    #[test]
    fn compression_is_found_by_magic_bytes() {
        assert_eq!(Compression::of(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(Compression::of(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(Compression::of(&[0xfd, b'7', b'z', b'X', b'Z', 0]), Compression::Xz);
        assert_eq!(Compression::of(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Compression::Zstd);
        assert_eq!(Compression::of(b"owncloud/"), Compression::None);
        assert_eq!(Compression::of(b""), Compression::None);
    }

    #[test]
    fn unpacks_strips_keeps_folders_and_clears_special_bits() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("var/www")).unwrap();
        std::fs::set_permissions(root.join("var/www"), std::fs::Permissions::from_mode(0o750)).unwrap();
        let mut t = Vec::new();
        member(&mut t, "oc/", tar::EntryType::Directory, "", 0o1777, b"");
        // 2755, not 2555: the unit tier runs as nobody, who cannot write into a 0555
        // folder on the second run below (root can).
        member(&mut t, "oc/sub/", tar::EntryType::Directory, "", 0o2755, b"");
        file(&mut t, "oc/sub/index.php", 0o4755, b"<?php");
        file(&mut t, "oc/g", 0o2644, b"g");
        member(&mut t, "oc/link", tar::EntryType::Symlink, "/etc/passwd", 0o777, b"");
        member(&mut t, "oc/hard", tar::EntryType::Link, "oc/g", 0o644, b"");
        file(&mut t, "oc/deep/er/f", 0o600, b"x");
        let t = end(t);
        let r = run(root, "/var/www", 1, &t).unwrap();
        assert_eq!((r.members, r.bytes, r.skipped), (6, 7, 1));
        let w = root.join("var/www");
        let mode = |p: &str| std::fs::symlink_metadata(w.join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(""), 0o750, "an existing destination folder is kept as it is");
        assert_eq!(mode("sub"), 0o755);
        assert_eq!(mode("sub/index.php"), 0o755);
        assert_eq!(mode("g"), 0o644);
        assert_eq!(std::fs::read_link(w.join("link")).unwrap(), Path::new("/etc/passwd"));
        let (g, h) = (std::fs::metadata(w.join("g")).unwrap(), std::fs::metadata(w.join("hard")).unwrap());
        assert_eq!(g.ino(), h.ino());
        assert_eq!(g.mtime(), 1_000_000);
        assert_eq!(std::fs::read(w.join("deep/er/f")).unwrap(), b"x");
        // No temp names left behind.
        let names: Vec<_> = std::fs::read_dir(&w).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(names.iter().all(|n| !n.to_string_lossy().starts_with(".container-unpack")), "{names:?}");
        // Again over itself: files replaced, folders kept.
        run(root, "/var/www", 1, &t).unwrap();
        assert_eq!(mode("sub/index.php"), 0o755);
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let (root, host) = (d.path().join("layer"), d.path().join("host"));
        std::fs::create_dir_all(root.join("in")).unwrap();
        std::fs::create_dir_all(&host).unwrap();
        std::os::unix::fs::symlink(&host, root.join("etc2")).unwrap();
        let mut t = Vec::new();
        member(&mut t, "evil", tar::EntryType::Symlink, host.to_str().unwrap(), 0o777, b"");
        file(&mut t, "evil/pwned", 0o644, b"x");
        let t = end(t);
        // The target is missing inside the layer: refused, not made on the host.
        let e = run(&root, "/", 0, &t).unwrap_err().to_string();
        assert!(e.contains("`evil/pwned`") && e.contains("missing folder"), "{e}");
        assert_eq!(std::fs::read_dir(&host).unwrap().count(), 0, "a file reached the host");
        // With it there, both land inside the layer, as in a chroot.
        let inner = root.join(host.strip_prefix("/").unwrap());
        std::fs::create_dir_all(&inner).unwrap();
        run(&root, "/", 0, &t).unwrap();
        let mut t = Vec::new();
        file(&mut t, "etc2/x", 0o644, b"x");
        member(&mut t, "up", tar::EntryType::Symlink, "../../../../..", 0o777, b"");
        file(&mut t, "up/y", 0o644, b"y");
        run(&root, "/", 0, &end(t)).unwrap();
        assert_eq!(std::fs::read_dir(&host).unwrap().count(), 0, "a file reached the host");
        assert!(inner.join("pwned").is_file() && inner.join("x").is_file());
        assert!(root.join("y").is_file(), "`..` of a symlink stops at the root");
        assert!(!d.path().join("y").exists());
    }

    #[test]
    fn refuses_escapes_devices_fifos_and_foreign_hard_links_naming_the_member() {
        let d = tempfile::tempdir().unwrap();
        let (root, host) = (d.path().join("layer"), d.path().join("secret"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(&host, "host").unwrap();
        std::os::unix::fs::symlink(d.path(), root.join("out")).unwrap();
        let cases: Vec<(Vec<u8>, &str, &str)> = vec![
            (
                end({
                    let mut t = Vec::new();
                    file(&mut t, "../../x", 0o644, b"x");
                    t
                }),
                "../../x",
                "`..`",
            ),
            (
                end({
                    let mut t = Vec::new();
                    file(&mut t, "/abs/x", 0o644, b"x");
                    t
                }),
                "/abs/x",
                "absolute",
            ),
            (
                end({
                    let mut t = Vec::new();
                    member(&mut t, "null", tar::EntryType::Char, "", 0o666, b"");
                    t
                }),
                "null",
                "device",
            ),
            (
                end({
                    let mut t = Vec::new();
                    member(&mut t, "sda", tar::EntryType::Block, "", 0o666, b"");
                    t
                }),
                "sda",
                "device",
            ),
            (
                end({
                    let mut t = Vec::new();
                    member(&mut t, "fifo", tar::EntryType::Fifo, "", 0o666, b"");
                    t
                }),
                "fifo",
                "FIFO",
            ),
            (
                end({
                    let mut t = Vec::new();
                    member(&mut t, "stolen", tar::EntryType::Link, host.to_str().unwrap(), 0o644, b"");
                    t
                }),
                "stolen",
                "absolute",
            ),
            (
                end({
                    let mut t = Vec::new();
                    member(&mut t, "stolen2", tar::EntryType::Link, "out/secret", 0o644, b"");
                    t
                }),
                "stolen2",
                "not a file this tarball unpacked",
            ),
        ];
        for (t, who, why) in cases {
            let e = run(&root, "/", 0, &t).unwrap_err().to_string();
            assert!(e.contains(&format!("`{who}`")) && e.contains(why), "{who}: {e}");
        }
        let left: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("out")], "nothing was made");
        assert_eq!(std::fs::metadata(&host).unwrap().nlink(), 1);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
    }

    #[test]
    fn limits_bound_bytes_and_members() {
        let d = tempfile::tempdir().unwrap();
        let mut t = Vec::new();
        for i in 0..5 {
            file(&mut t, &format!("f{i}"), 0o644, &[b'x'; 600]);
        }
        let t = end(t);
        let few = UnpackLimits { bytes: MAX_UNPACK_BYTES, members: 3 };
        let e = unpack_tarball(d.path(), "/a", 0, &t[..], few).unwrap_err().to_string();
        assert!(e.contains("more than 3 members"), "{e}");
        let small = UnpackLimits { bytes: 2048, members: 100 };
        let e = unpack_tarball(d.path(), "/b", 0, &t[..], small).unwrap_err().to_string();
        assert!(e.contains("more than 2048 bytes"), "{e}");
        unpack_tarball(d.path(), "/c", 0, &t[..], UnpackLimits::default()).unwrap();
        assert_eq!(std::fs::read_dir(d.path().join("c")).unwrap().count(), 5);
    }

    #[test]
    fn every_compression_unpacks() {
        use std::io::Write;
        let mut t = Vec::new();
        file(&mut t, "a/f", 0o644, b"content");
        let t = end(t);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&t).unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&t).unwrap();
        let mut xz = lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1)).unwrap();
        xz.write_all(&t).unwrap();
        let zst = ruzstd::encoding::compress_to_vec(&t[..], ruzstd::encoding::CompressionLevel::Fastest);
        let d = tempfile::tempdir().unwrap();
        let all = [gz.finish().unwrap(), bz.finish().unwrap(), xz.finish().unwrap(), zst, t.clone()];
        for (i, z) in all.iter().enumerate() {
            run(d.path(), &format!("/d{i}"), 1, z).unwrap();
            assert_eq!(std::fs::read(d.path().join(format!("d{i}/f"))).unwrap(), b"content");
        }
    }
}
