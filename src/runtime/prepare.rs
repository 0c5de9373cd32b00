//! Turn a plan into what the kernel needs: secrets, rendered files and volumes on
//! disk, the sandbox spec and the supervisor config.
//!
//! Invariant: [`sandbox_spec`] and [`supervisor_config`] are pure functions of the plan
//! and the container's folders; the writers here only touch the container's folder
//! under the state root (never the host outside it, never the kernel), and each is
//! idempotent, so an interrupted apply can simply run them again.
//!
//! Rendered files are bound one by one onto their container path (read-only inside).
//! A changed one is never rewritten in place, where a reader inside would see it
//! empty or half-written and a failed write (ENOSPC) would leave it torn: the new
//! content goes to a new inode (temp file, fsync, rename, fsync of the folder), and a
//! running container gets that inode bound in place of the old one
//! (`exec::livemount`, called by `lifecycle` with the paths these writers return).
//!
//! Ownership: with a user namespace (`base` = the host uid of the container's root,
//! see [`super::ids`]) everything the container owns on the host — volumes, rendered
//! files, secrets, its run folder — belongs to the container's range: an owner named
//! in the spec is looked up in the container's `/etc` and shifted by `base`. The
//! container's folder is 0700 root, so no host user but root reaches any of it.

use super::layout::{Dirs, RUN_IN};
use super::RunError;
use crate::exec::beneath::Beneath;
use crate::exec::sandbox::{IdMap, IdRange, MountReq, NetNs, Program, RootFs, SandboxSpec};
use crate::exec::supervisor::SupervisorConfig;
use crate::plan::types::{FileRes, Plan};
use crate::spec::types::{MountKind, NetMode};
use std::collections::BTreeSet;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Length of a generated secret. Letters and digits only: modules embed secrets in
/// SQL and PHP single-quoted strings.
pub const SECRET_LEN: usize = 32;

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let context = context.into();
    move |source| RunError::Io { context, source }
}

/// The root filesystem of a plan's base: the host's system, or the layers the last
/// `apply` built for it (named in `rootfs.json`, which must match the plan).
pub fn rootfs(plan: &Plan, dirs: &Dirs) -> Result<RootFs, RunError> {
    let Some(stack) = crate::plan::layer::stack(&plan.layer) else {
        return match plan.layer.base.as_str() {
            "host" => Ok(RootFs::Host),
            other => Err(RunError::Unsupported(format!("base `{other}` is not supported"))),
        };
    };
    let want = stack.ids();
    let rec = super::layers::read_rootfs_record(dirs).filter(|r| r.layers == want).ok_or_else(|| {
        RunError::Failed(format!(
            "the root of {} ({}) is not built for this spec; `container apply` builds it",
            plan.name, plan.layer.base
        ))
    })?;
    let cache = super::layers::Cache::new(&rec.cache);
    let mut roots = Vec::new();
    for id in &rec.layers {
        if !cache.is_built(id) {
            return Err(RunError::Failed(format!(
                "layer {id} of {} is missing from the cache {} (removed by hand?); `container apply` rebuilds it",
                plan.name,
                rec.cache.display()
            )));
        }
        roots.push(cache.root_of(id));
    }
    Ok(RootFs::Overlay(roots))
}

/// The `/etc` that user and group names of the container resolve in, on the host.
/// For layers: the topmost that has a passwd file (package layers that add users
/// hold a full copy of it).
pub fn etc_dir(root: &RootFs) -> PathBuf {
    match root {
        RootFs::Host => PathBuf::from("/etc"),
        RootFs::Dir(d) => d.join("etc"),
        RootFs::Overlay(layers) => layers
            .iter()
            .map(|l| l.join("etc"))
            .find(|e| e.join("passwd").is_file())
            .unwrap_or_else(|| PathBuf::from("/nonexistent")),
        RootFs::Build { lower, upper, .. } => std::iter::once(upper)
            .chain(lower)
            .map(|l| l.join("etc"))
            .find(|e| e.join("passwd").is_file())
            .unwrap_or_else(|| PathBuf::from("/nonexistent")),
    }
}

/// A random string of `SECRET_LEN` letters and digits from the kernel's CSPRNG.
pub fn generate_secret() -> Result<String, RunError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(SECRET_LEN);
    let mut buf = [0u8; 64];
    while out.len() < SECRET_LEN {
        let n = crate::exec::random::fill(&mut buf).map_err(io("getrandom"))?;
        // Rejection sampling keeps the distribution uniform (248 = 4 * 62).
        for &b in &buf[..n] {
            if (b as usize) < 248 && out.len() < SECRET_LEN {
                out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    Ok(out)
}

/// What is wrong with a secret's file, if anything.
#[derive(Debug)]
pub enum SecretFile {
    Ok,
    Missing,
    Empty,
    Refused(std::io::Error),
}

/// The state of secret `name`'s file. The folder is bound read-only inside and the
/// files are the container root's: it is opened beneath the secrets folder, never
/// through a symlink, regular files only (a FIFO does not hang us).
pub fn secret_file(dirs: &Dirs, name: &str) -> SecretFile {
    let dir = match Beneath::open(&dirs.secrets()) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return SecretFile::Missing,
        Err(e) => return SecretFile::Refused(e),
    };
    match dir.read(Path::new(name), MAX_SECRET) {
        Ok(None) => SecretFile::Missing,
        Ok(Some(b)) if b.iter().all(u8::is_ascii_whitespace) => SecretFile::Empty,
        Ok(Some(_)) => SecretFile::Ok,
        Err(e) => SecretFile::Refused(e),
    }
}

/// The most a secret's file may hold (a generated one has `SECRET_LEN` bytes).
const MAX_SECRET: u64 = 64 << 10;

fn secret_error(dirs: &Dirs, name: &str, what: &str) -> RunError {
    let c = &dirs.name;
    RunError::Failed(format!(
        "secret `{name}` of container `{c}` {what}: {} (it was generated at the first apply; data tied to it \
         may need it). Restore the file, or run `container secret regenerate {c} {name}` and apply the \
         spec again to make a new one.",
        dirs.secrets().join(name).display()
    ))
}

/// Refuse a plan whose secrets cannot be used, before anything changes: a secret's
/// file that is empty or not a regular file (a symlink, a FIFO), or missing while the
/// applied plan `old` uses the secret (it was generated then, and data such as a
/// database may be tied to it: never silently replaced). A secret new to the plan is
/// generated by [`ensure_secrets`]; one in `regenerate` gets a new value there.
pub fn check_secrets(
    plan: &Plan,
    old: Option<&Plan>,
    dirs: &Dirs,
    regenerate: &BTreeSet<String>,
) -> Result<(), RunError> {
    for name in plan.secrets.iter().filter(|n| !regenerate.contains(*n)) {
        match secret_file(dirs, name) {
            SecretFile::Ok => {}
            SecretFile::Missing if old.is_some_and(|o| o.secrets.contains(name)) => {
                return Err(secret_error(dirs, name, "is missing"))
            }
            SecretFile::Missing => {}
            SecretFile::Empty => return Err(secret_error(dirs, name, "is empty")),
            SecretFile::Refused(e) => return Err(secret_error(dirs, name, &format!("cannot be used ({e})"))),
        }
    }
    Ok(())
}

/// Create every secret of the plan that does not exist yet, and a new value for each
/// one in `regenerate`; returns the names written. Refuses what [`check_secrets`]
/// refuses (`old`: the applied plan).
pub fn ensure_secrets(
    plan: &Plan,
    dirs: &Dirs,
    base: Option<u32>,
    old: Option<&Plan>,
    regenerate: &BTreeSet<String>,
) -> Result<Vec<String>, RunError> {
    check_secrets(plan, old, dirs, regenerate)?;
    lock_down(dirs)?;
    let dir = dirs.secrets();
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("chmod {}", dir.display())))?;
    // Readable by the container's root (the supervisor hands them to services).
    chown(&dir, shift(base, (0, 0)))?;
    let anchor = Beneath::open(&dir).map_err(io(format!("opening {}", dir.display())))?;
    let mut created = Vec::new();
    for name in &plan.secrets {
        let path = dir.join(name);
        if !regenerate.contains(name) && matches!(secret_file(dirs, name), SecretFile::Ok) {
            chown(&path, shift(base, (0, 0)))?;
            continue;
        }
        let value = generate_secret()?;
        // 0600 from the start (a temp file of a random name, then rename): never
        // readable by others, and a symlink in its place is replaced, not followed.
        anchor
            .write_atomic(Path::new(name), value.as_bytes(), 0o600)
            .map_err(io(format!("creating {}", path.display())))?;
        chown(&path, shift(base, (0, 0)))?;
        created.push(name.clone());
    }
    Ok(created)
}

/// Look up a secret's value (the executor is the only reader): `None` for a name
/// that is no file name, a missing or empty file, or one that is not a regular file.
pub fn read_secret(dirs: &Dirs, name: &str) -> Option<String> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return None;
    }
    let dir = Beneath::open(&dirs.secrets()).ok()?;
    let bytes = dir.read(Path::new(name), MAX_SECRET).ok()??;
    let value = String::from_utf8(bytes).ok()?;
    (!value.trim().is_empty()).then_some(value)
}

fn owner_ids(owner: &str, etc: &Path) -> Result<(u32, u32), RunError> {
    let id = crate::exec::supervisor::resolve_user(owner, etc)
        .map_err(|e| RunError::Failed(format!("owner `{owner}`: {e} (looked up in {})", etc.display())))?;
    Ok((id.uid, id.gid))
}

/// Host ids of the container's ids `(uid, gid)`: shifted into its range.
pub fn shift(base: Option<u32>, (uid, gid): (u32, u32)) -> (u32, u32) {
    match base {
        Some(b) => (b + uid, b + gid),
        None => (uid, gid),
    }
}

fn chown(path: &Path, (uid, gid): (u32, u32)) -> Result<(), RunError> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(io(format!("chown {}", path.display())))
}

/// The container's folder is host root's alone: no other host user reaches its
/// volumes, files, secrets or run folder (the container gets them as mounts).
pub fn lock_down(dirs: &Dirs) -> Result<(), RunError> {
    super::layout::private_dir(&dirs.root, true).map_err(io(format!("creating {}", dirs.root.display())))
}

/// A folder of the container's own folder (`files/`, `volumes/`, `net/`) as host
/// root's alone, 0700, like the container's folder around it.
fn private_sub(dir: &Path) -> Result<(), RunError> {
    super::layout::private_dir(dir, true).map_err(io(format!("creating {}", dir.display())))
}

/// Shift every id below the range size in the tree `dir` (not following symlinks,
/// not crossing into other file systems) into the range at `base`; ids already in a
/// range stay. The top folder goes last, so an interrupted shift is redone.
pub fn shift_tree(dir: &Path, base: u32) -> Result<(), RunError> {
    map_tree(dir, &|id| if id < super::ids::SIZE { id + base } else { id })
}

/// The reverse of [`shift_tree`]: ids of the range at `base` back to host ids (a
/// container that opted out of its user namespace).
pub fn unshift_tree(dir: &Path, base: u32) -> Result<(), RunError> {
    map_tree(dir, &|id| if id >= base && id - base < super::ids::SIZE { id - base } else { id })
}

fn map_tree(dir: &Path, f: &dyn Fn(u32) -> u32) -> Result<(), RunError> {
    use std::os::unix::fs::MetadataExt;
    let top = std::fs::symlink_metadata(dir).map_err(io(format!("reading {}", dir.display())))?;
    fn walk(p: &Path, dev: u64, f: &dyn Fn(u32) -> u32) -> Result<(), RunError> {
        let m = std::fs::symlink_metadata(p).map_err(io(format!("reading {}", p.display())))?;
        if m.dev() != dev {
            return Ok(());
        }
        if m.is_dir() {
            for e in std::fs::read_dir(p).map_err(io(format!("reading {}", p.display())))? {
                let e = e.map_err(io(format!("reading {}", p.display())))?;
                walk(&e.path(), dev, f)?;
            }
        }
        let (u, g) = (m.uid(), m.gid());
        let (nu, ng) = (f(u), f(g));
        if (nu, ng) != (u, g) {
            // lchown clears setuid/setgid bits on files: put the mode back.
            chown(p, (nu, ng))?;
            if !m.file_type().is_symlink() && m.mode() & 0o6000 != 0 {
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(m.mode() & 0o7777))
                    .map_err(io(format!("chmod {}", p.display())))?;
            }
        }
        Ok(())
    }
    walk(dir, top.dev(), f)
}

/// Volumes of an opted-out container that still belong to its former range at
/// `old` (their top folder is in it): apply shifts them back to host ids once.
pub fn volumes_to_unshift(plan: &Plan, dirs: &Dirs, old: u32) -> Vec<String> {
    volumes_owned_by(plan, dirs, |uid| uid >= old && uid - old < super::ids::SIZE)
}

/// Volumes of the plan that exist and hold host ids from before the container had
/// a user namespace (their top folder is outside the range at `base`): apply
/// shifts them into the range once (`plan` shows it).
pub fn volumes_to_migrate(plan: &Plan, dirs: &Dirs, base: Option<u32>) -> Vec<String> {
    let Some(b) = base else { return Vec::new() };
    volumes_owned_by(plan, dirs, |uid| uid < b || uid >= b + super::ids::SIZE)
}

/// The plan's volume sources whose existing top folder's owner passes `owner`,
/// sorted, each once.
fn volumes_owned_by(plan: &Plan, dirs: &Dirs, owner: impl Fn(u32) -> bool) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out: Vec<String> = plan
        .mounts
        .values()
        .filter(|m| m.kind == MountKind::Volume)
        .filter_map(|m| m.source.as_ref().map(|s| s.to_string()))
        .filter(|src| std::fs::symlink_metadata(dirs.volume(src)).is_ok_and(|md| owner(md.uid())))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Give the run folder (bound read-write at /run/container) to the container's root:
/// its supervisor writes status, socket and logs there.
pub fn own_run_dir(dirs: &Dirs, base: Option<u32>) -> Result<(), RunError> {
    if let Some(b) = base {
        shift_tree(&dirs.run(), b)?;
    }
    Ok(())
}

/// Write one rendered file (a new inode when its content changed, see the module
/// header); returns whether its content changed.
fn write_file(dirs: &Dirs, path: &str, f: &FileRes, etc: &Path, base: Option<u32>) -> Result<bool, RunError> {
    let content = f
        .content
        .render(|n| read_secret(dirs, n))
        .ok_or_else(|| RunError::Failed(format!("file {path}: a secret it uses has no value")))?;
    let host = dirs.file(path);
    let (uid, gid) = shift(base, owner_ids(&f.owner, etc)?);
    replace_file(&host, content.as_bytes(), (uid, gid), f.mode.0)
}
/// Write every rendered file; returns the container paths whose content changed.
pub fn write_files(plan: &Plan, dirs: &Dirs, etc: &Path, base: Option<u32>) -> Result<Vec<String>, RunError> {
    lock_down(dirs)?;
    // A file keeps the mode and owner the spec gives it, which is what the container
    // sees through its bind mount (the same inode): 0644 for one holding a secret is
    // the spec's to choose. On the host, `files/` (0700, host root's) is what keeps
    // every other host user, and the container's own range, away from it.
    private_sub(&dirs.files())?;
    let mut changed = Vec::new();
    for (path, f) in &plan.files {
        if write_file(dirs, path, f, etc, base)? {
            changed.push(path.clone());
        }
    }
    Ok(changed)
}

fn volumes_beneath(dirs: &Dirs) -> Result<Beneath, RunError> {
    Beneath::open(&dirs.volumes()).map_err(io(format!("opening {}", dirs.volumes().display())))
}

fn refused(target: &str, src: &str, e: std::io::Error) -> RunError {
    RunError::Failed(format!(
        "volume `{src}` (mounted at {target}): {e}; a volume's folder must be a folder, not a symlink (the \
         container may have replaced it: remove the symlink from the host, \
         containers/<name>/volumes/{src}, and start again)"
    ))
}

/// The folder of volume `src`, opened beneath the volumes folder without following
/// any symlink; `None` when it does not exist. A symlink (or a file) on the way or
/// as the folder itself is refused with an error naming the volume.
fn volume_dir(vols: &Beneath, target: &str, src: &str) -> Result<Option<std::fs::File>, RunError> {
    vols.open_dir(Path::new(src)).map_err(|e| refused(target, src, e))
}

/// Refuse to go on when an existing volume's folder, or a folder on the way to it,
/// is a symlink or not a folder: nested volumes (`data` and `data/sub`) put the
/// inner one's path in the outer one, which the container owns. Checked before any
/// walk over the volumes (ownership shifts) and again just before the sandbox is
/// spawned, for an error that names the volume. The sandbox does not trust this
/// check: its child resolves each volume beneath the volumes folder again, without
/// following a symlink, and binds what it opened (`MountReq::volume`), so a swap
/// after this check (by a process of the container that is still alive) is refused
/// too.
pub fn check_volumes(plan: &Plan, dirs: &Dirs) -> Result<(), RunError> {
    if !plan.mounts.values().any(|m| m.kind == MountKind::Volume) || !dirs.volumes().exists() {
        return Ok(());
    }
    let vols = volumes_beneath(dirs)?;
    for (target, m) in &plan.mounts {
        if m.kind == MountKind::Volume {
            volume_dir(&vols, target, m.source.as_deref().unwrap_or_default())?;
        }
    }
    Ok(())
}

/// Create missing volume folders (owner and mode apply to a new volume only: the
/// data in an existing one belongs to the container), owned by the container's
/// range; shift an existing volume that holds host ids into the range (see
/// [`volumes_to_migrate`]); check host bind sources. Returns the migrated volumes.
pub fn ensure_volumes(plan: &Plan, dirs: &Dirs, etc: &Path, base: Option<u32>) -> Result<Vec<String>, RunError> {
    lock_down(dirs)?;
    private_sub(&dirs.volumes())?;
    let vols = volumes_beneath(dirs)?;
    check_volumes(plan, dirs)?;
    let migrate = volumes_to_migrate(plan, dirs, base);
    if let Some(b) = base {
        for src in &migrate {
            shift_tree(&dirs.volume(src), b)?;
        }
    }
    for (target, m) in &plan.mounts {
        match m.kind {
            MountKind::Volume => {
                let src = m.source.as_deref().unwrap_or_default();
                if volume_dir(&vols, target, src)?.is_some() {
                    continue;
                }
                let dir = dirs.volume(src);
                // Folder by folder, never following a symlink (an outer volume's
                // contents are the container's: a name on the way may be its link).
                vols.create_dirs(Path::new(src)).map_err(|e| refused(target, src, e))?;
                let made = volume_dir(&vols, target, src)?
                    .ok_or_else(|| RunError::Failed(format!("volume `{src}` ({target}): vanished as it was made")))?;
                let owner = match &m.owner {
                    Some(owner) => owner_ids(owner, etc)?,
                    None => (0, 0),
                };
                let (uid, gid) = shift(base, owner);
                std::os::unix::fs::fchown(&made, Some(uid), Some(gid))
                    .map_err(io(format!("chown {}", dir.display())))?;
                if let Some(mode) = &m.mode {
                    made.set_permissions(std::fs::Permissions::from_mode(mode.0))
                        .map_err(io(format!("chmod {}", dir.display())))?;
                }
            }
            MountKind::Bind => {
                let src = m.source.as_deref().unwrap_or_default();
                if !Path::new(src).exists() {
                    return Err(RunError::Failed(format!("mount {target}: host path {src} does not exist")));
                }
            }
            MountKind::Tmpfs => {}
        }
    }
    Ok(migrate)
}

/// Name resolution files every container with its own network gets (as Docker
/// does), unless the plan renders them itself: `/etc/hosts` naming the container, and
/// `/etc/resolv.conf` with the spec's nameservers. Without nameservers the file has
/// none, so the resolver asks 127.0.0.1 inside the container and fails at once,
/// instead of waiting for the host's resolver that a routed container usually
/// cannot reach (e.g. Python's http.server does a reverse lookup at start).
pub fn net_files(plan: &Plan) -> Vec<(&'static str, String)> {
    if plan.network.mode == NetMode::Host {
        return Vec::new();
    }
    let mut hosts = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let v4 = plan.network.ipv4_addr().map(std::net::IpAddr::V4);
    for a in v4.into_iter().chain(plan.network.ipv6_addr().map(std::net::IpAddr::V6)) {
        hosts.push_str(&format!("{a}\t{}\n", plan.hostname));
    }
    if plan.network.ipv4.is_none() {
        hosts.push_str(&format!("127.0.1.1\t{}\n", plan.hostname));
    }
    let mut resolv = String::from("# written by container from the spec's network.nameservers\n");
    for n in &plan.network.nameservers {
        resolv.push_str(&format!("nameserver {n}\n"));
    }
    [("/etc/hosts", hosts), ("/etc/resolv.conf", resolv)]
        .into_iter()
        .filter(|(p, _)| !plan.files.contains_key(*p))
        .collect()
}

/// Host path of a generated name resolution file.
fn net_file(dirs: &Dirs, path: &str) -> PathBuf {
    dirs.net_file(path)
}

/// Write the name resolution files (they are bound like rendered files); returns the
/// container paths whose content changed.
pub fn write_net_files(plan: &Plan, dirs: &Dirs, base: Option<u32>) -> Result<Vec<String>, RunError> {
    let mut changed = Vec::new();
    for (path, content) in net_files(plan) {
        let host = net_file(dirs, path);
        if let Some(dir) = host.parent() {
            private_sub(dir)?;
        }
        if replace_file(&host, content.as_bytes(), shift(base, (0, 0)), 0o644)? {
            changed.push(path.to_string());
        }
    }
    Ok(changed)
}

/// Make `host` hold `content`, owned `ids`, with `mode`. Unchanged content keeps its
/// inode (owner and mode are set on it: atomic for a reader). Changed content goes
/// to a new inode: `.<name>.tmp` made `O_EXCL | O_NOFOLLOW` 0600 in the same folder
/// (ours: host root's, 0700), written, fsynced, given its owner and mode, renamed
/// over `host`, the folder fsynced. A failure on the way (ENOSPC) removes the temp
/// file and leaves the old content whole. Returns whether the content changed.
fn replace_file(host: &Path, content: &[u8], ids: (u32, u32), mode: u32) -> Result<bool, RunError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(host).ok().filter(|m| m.is_file());
    if let Some(m) = meta.filter(|_| std::fs::read(host).is_ok_and(|old| old == content)) {
        if (m.uid(), m.gid()) != ids {
            std::os::unix::fs::lchown(host, Some(ids.0), Some(ids.1))
                .map_err(io(format!("chown {}", host.display())))?;
        }
        if m.mode() & 0o7777 != mode || (m.uid(), m.gid()) != ids {
            std::fs::set_permissions(host, std::fs::Permissions::from_mode(mode))
                .map_err(io(format!("chmod {}", host.display())))?;
        }
        return Ok(false);
    }
    let parent = host.parent().ok_or_else(|| RunError::Failed(format!("{}: no folder", host.display())))?;
    std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    let name = host.file_name().ok_or_else(|| RunError::Failed(format!("{}: no file name", host.display())))?;
    let tmp = parent.join(format!(".{}.tmp", name.to_string_lossy()));
    // A temp file an interrupted write left (we hold the container's lock).
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        // O_NOFOLLOW | O_EXCL: the folder is ours, a symlink there is never followed.
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        out.write_all(content)?;
        out.sync_all()?;
        std::os::unix::fs::fchown(&out, Some(ids.0), Some(ids.1))?;
        out.set_permissions(std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, host)?;
        std::fs::File::open(parent)?.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(format!("writing {}", host.display()))(e));
    }
    Ok(true)
}

/// What a rendered (or name resolution) file `host` is bound from: a hidden hard link
/// `.<name>@<inode>` next to it, one per version. The sandbox and
/// `exec::livemount` bind the link, never `host` itself: replacing `host` by a rename
/// unlinks its name, and the kernel mounts nothing on an unlinked name, while a
/// link stays until [`clear_bound`] (at stop) or until a swap took its mount away.
pub fn bound_name(host: &Path, ino: u64) -> PathBuf {
    let name = host.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    host.with_file_name(format!(".{name}@{ino}"))
}

/// The inode `host` holds now (`None`: missing or not a regular file).
pub fn inode_of(host: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(host).ok().filter(|m| m.is_file()).map(|m| m.ino())
}

/// Make the link [`bound_name`] of `host`'s current inode (kept if it is there: a
/// link keeps its inode, so no other file gets its number meanwhile); returns it.
pub fn link_bound(host: &Path) -> Result<PathBuf, RunError> {
    let ino = inode_of(host).ok_or_else(|| RunError::Failed(format!("{}: not a file", host.display())))?;
    let link = bound_name(host, ino);
    match std::fs::hard_link(host, &link) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(io(format!("linking {}", link.display()))(e)),
        _ => Ok(link),
    }
}

/// Remove every bound link under the container's `files/` and `net/` (nothing of the
/// container runs: no mount holds them).
pub fn clear_bound(dirs: &Dirs) -> Result<(), RunError> {
    fn walk(dir: &Path) -> Result<(), RunError> {
        let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
        for e in entries.flatten() {
            let (name, p) = (e.file_name(), e.path());
            let t = e.file_type().map_err(io(format!("reading {}", p.display())))?;
            if t.is_dir() {
                walk(&p)?;
            } else if name.to_string_lossy().starts_with('.')
                && name.to_string_lossy().rsplit_once('@').is_some_and(|(_, n)| n.parse::<u64>().is_ok())
            {
                std::fs::remove_file(&p).map_err(io(format!("removing {}", p.display())))?;
            }
        }
        Ok(())
    }
    walk(&dirs.files())?;
    walk(&dirs.root.join("net"))
}

/// The bind source of `host`: its current bound link if one is there, else `host`.
fn bind_source(host: PathBuf) -> PathBuf {
    match inode_of(&host).map(|ino| bound_name(&host, ino)).filter(|l| l.exists()) {
        Some(link) => link,
        None => host,
    }
}

/// Link every file the sandbox binds (see [`bound_name`]); before the spawn.
pub fn link_all_bound(plan: &Plan, dirs: &Dirs) -> Result<(), RunError> {
    clear_bound(dirs)?;
    for path in plan.files.keys() {
        link_bound(&dirs.file(path))?;
    }
    for (path, _) in net_files(plan) {
        link_bound(&net_file(dirs, path))?;
    }
    Ok(())
}

/// Argv of the container's PID 1: `container-init --config-fd 3` (its configuration
/// is the sealed memfd `lifecycle` passes at that fd, [`supervisor_config_fd`]). When
/// PID 1 is the fallback, our own binary, `__supervise` goes after `argv[0]` (see
/// [`init_program`]).
pub fn init_argv() -> Vec<String> {
    use crate::exec::supervisor::{CONFIG_FD, CONFIG_FD_ARG};
    vec!["container-init".into(), CONFIG_FD_ARG.into(), CONFIG_FD.to_string()]
}

/// The container's PID 1: the small `container-init` binary installed next to the
/// running executable, exec'd through a read-only private mount of that file
/// (`Program::Exe`); if it is missing, a sealed copy of our own binary running the
/// hidden `__supervise` subcommand (`Program::SelfExe`, larger and slower).
pub fn init_program() -> Program {
    let init =
        std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join("container-init"))).filter(|p| p.is_file());
    match init {
        Some(path) => Program::Exe { path, argv: init_argv() },
        None => {
            let mut argv = init_argv();
            argv.insert(1, "__supervise".into());
            Program::SelfExe(argv)
        }
    }
}

/// The sandbox for a plan. Mount order: the run folder and secrets, then the plan's
/// mounts by target (a parent before what is inside it), then rendered files (so a
/// file can sit inside a volume or tmpfs).
pub fn sandbox_spec(
    plan: &Plan,
    dirs: &Dirs,
    rootfs: RootFs,
    etc: &Path,
    base: Option<u32>,
) -> Result<SandboxSpec, RunError> {
    let mut spec = SandboxSpec::new(&plan.hostname, rootfs, init_program());
    spec.user_ns = base.map(|b| {
        let r = vec![IdRange { inside: 0, outside: b, count: super::ids::SIZE }];
        IdMap { uids: r.clone(), gids: r }
    });
    spec.net = if plan.network.mode == NetMode::Host { NetNs::Host } else { NetNs::New };
    spec.devices = plan.devices.iter().map(|d| d.to_string()).collect();
    // PID 1 keeps what its services may need, no more (see `Plan::pid1_security`).
    let pid1 = crate::exec::harden::Hardening::for_pid1(&plan.pid1_security())
        .map_err(|e| RunError::Failed(format!("seccomp filter of PID 1: {e}")))?;
    spec.hardening = Some(pid1);
    spec.mounts.push(MountReq::bind(RUN_IN, dirs.run(), false));
    spec.mounts.push(MountReq::bind(&format!("{RUN_IN}/secrets"), dirs.secrets(), true));
    for (target, m) in &plan.mounts {
        let req = match m.kind {
            // Resolved beneath the volumes folder by the sandbox's child itself, never
            // through a symlink (the folders in it are the container's).
            MountKind::Volume => {
                MountReq::volume(target, dirs.volumes(), m.source.as_deref().unwrap_or_default(), m.read_only)
            }
            MountKind::Bind => MountReq::bind(target, m.source.as_deref().unwrap_or_default(), m.read_only),
            MountKind::Tmpfs => {
                let (uid, gid) = match &m.owner {
                    Some(o) => owner_ids(o, etc)?,
                    None => (0, 0),
                };
                let mode = match &m.mode {
                    Some(s) => s.0,
                    None => 0o755,
                };
                MountReq {
                    target: target.clone(),
                    kind: crate::exec::sandbox::MountSource::Tmpfs { size: m.size, mode, uid, gid },
                }
            }
        };
        spec.mounts.push(req);
    }
    for path in plan.files.keys() {
        spec.mounts.push(MountReq::bind(path, bind_source(dirs.file(path)), true));
    }
    for (path, _) in net_files(plan) {
        spec.mounts.push(MountReq::bind(path, bind_source(net_file(dirs, path)), true));
    }
    Ok(spec)
}

/// The supervisor's config: the plan's services and init tasks, with its folders as
/// seen from inside the container.
pub fn supervisor_config(plan: &Plan) -> SupervisorConfig {
    let mut cfg = SupervisorConfig::new(RUN_IN);
    cfg.services = plan.services.clone();
    cfg.init = plan.init.clone();
    cfg.secrets_dir = Some(PathBuf::from(format!("{RUN_IN}/secrets")));
    cfg
}

/// The supervisor config for PID 1 (at start) or a `reconfigure`: recorded in the
/// container's host-private folder (`supervisor.json`, 0600, for the admin to read;
/// nothing reads it back) and returned as a sealed memfd, the only way the
/// supervisor takes it. The run folder is the container's: `logs/` is made beneath
/// it without following a symlink planted there, and no configuration is put there.
pub fn supervisor_config_fd(plan: &Plan, dirs: &Dirs) -> Result<OwnedFd, RunError> {
    let err = io(format!("creating {}", dirs.logs().display()));
    std::fs::create_dir_all(dirs.run())
        .and_then(|_| crate::exec::beneath::Beneath::open(&dirs.run()))
        .and_then(|run| run.create_dirs(Path::new("logs")))
        .map_err(err)?;
    let cfg = supervisor_config(plan);
    let json = serde_json::to_vec_pretty(&cfg).expect("supervisor config serializes");
    // A record for the admin, written again at every start: no fsyncs.
    crate::state::write_private_volatile(&dirs.supervisor_config(), &json)?;
    crate::exec::supervisor::sealed_config(&cfg).map_err(|e| RunError::Failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::compile::test_plan;

    #[test]
    fn secrets_are_alphanumeric_and_distinct() {
        let a = generate_secret().unwrap();
        let b = generate_secret().unwrap();
        assert_eq!(a.len(), SECRET_LEN);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn sandbox_spec_orders_mounts_and_binds_files_read_only() {
        let plan = test_plan(
            r#"
name = "t"
base = "host"
[[files]]
path = "/srv/data/conf.txt"
content = "x"
[[mounts]]
target = "/srv/data"
type = "volume"
[[mounts]]
target = "/srv/tmp"
type = "tmpfs"
size = "1M"
"#,
        );
        let dirs = Dirs::new(Path::new("/state"), "t");
        let spec = sandbox_spec(&plan, &dirs, RootFs::Host, Path::new("/etc"), None).unwrap();
        let targets: Vec<&str> = spec.mounts.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(
            targets,
            [
                "/run/container",
                "/run/container/secrets",
                "/srv/data",
                "/srv/tmp",
                "/srv/data/conf.txt",
                "/etc/hosts",
                "/etc/resolv.conf"
            ]
        );
        assert_eq!(
            spec.mounts[4],
            MountReq::bind("/srv/data/conf.txt", "/state/containers/t/files/srv/data/conf.txt", true)
        );
        assert_eq!(spec.mounts[2], MountReq::volume("/srv/data", "/state/containers/t/volumes", "srv-data", false));
        assert_eq!(spec.net, NetNs::New);
        assert_eq!(spec.hostname, "t");
    }

    #[test]
    fn a_changed_file_is_a_new_inode_and_the_old_one_stays_whole() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = Dirs::new(dir.path(), "t");
        let mut plan = test_plan(
            "name = \"t\"\nbase = \"host\"\n[[files]]\npath = \"/a/b\"\ncontent = \"one\"\nmode = \"0640\"\n",
        );
        // The file's owner (root) resolved in an /etc of the test that names the ids
        // owning the test's temp dir (this process' own) root: the real chown then
        // needs no privilege.
        use std::os::unix::fs::MetadataExt;
        let own = std::fs::metadata(dir.path()).unwrap();
        let (uid, gid) = (own.uid(), own.gid());
        let etc = dir.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        std::fs::write(etc.join("passwd"), format!("root:x:{uid}:{gid}:root:/root:/bin/sh\n")).unwrap();
        std::fs::write(etc.join("group"), format!("root:x:{gid}:\n")).unwrap();
        assert_eq!(write_files(&plan, &dirs, &etc, None).unwrap(), ["/a/b"]);
        let meta = std::fs::metadata(dirs.file("/a/b")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o640);
        assert_eq!((meta.uid(), meta.gid()), (uid, gid));
        assert!(write_files(&plan, &dirs, &etc, None).unwrap().is_empty(), "unchanged file rewritten");
        assert_eq!(std::fs::metadata(dirs.file("/a/b")).unwrap().ino(), meta.ino(), "unchanged file replaced");
        // What a reader (the bind mount) holds: the old inode, never touched again.
        let mut held = std::fs::File::open(dirs.file("/a/b")).unwrap();
        plan.files.get_mut("/a/b").unwrap().content = "two".into();
        assert_eq!(write_files(&plan, &dirs, &etc, None).unwrap(), ["/a/b"]);
        let after = std::fs::metadata(dirs.file("/a/b")).unwrap();
        assert_ne!(after.ino(), meta.ino(), "a changed file must be a new inode");
        assert_eq!((after.mode() & 0o7777, after.uid(), after.gid()), (0o640, uid, gid));
        assert_eq!(std::fs::read_to_string(dirs.file("/a/b")).unwrap(), "two");
        let mut old = String::new();
        std::io::Read::read_to_string(&mut held, &mut old).unwrap();
        assert_eq!(old, "one", "the old inode was rewritten");
        let names: Vec<_> = std::fs::read_dir(dirs.file("/a/b").parent().unwrap()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "a temp file was left: {names:?}");
    }
}
