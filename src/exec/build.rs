//! Running build programs: debootstrap, and commands inside a layer being built.
//!
//! Invariant: this is the only code that mounts or runs anything for a build, and it
//! never mounts in the host's namespace. Every command that runs a program of the
//! layer (debootstrap's second stage, apt-get with dpkg and the maintainer scripts,
//! a spec's `run` steps) goes through [`crate::exec::sandbox`], the one path that
//! prepares every process entering a container: new mount, pid, uts, ipc and cgroup
//! namespaces, `pivot_root` into the layer stack ([`RootFs::Build`]: the layers
//! below read-only, the new layer as the *writable* overlay upper; a base being
//! bootstrapped as a plain writable root), its own /proc, a minimal /dev, /tmp and
//! /run as tmpfs, the shared apt caches bound in, the build capability set
//! (`vocab::caps::build_set`: no SYS_ADMIN, SYS_PTRACE, SYS_MODULE, MKNOD, NET_ADMIN),
//! no_new_privs, the default seccomp filter, and `PR_SET_PDEATHSIG` (a killed CLI
//! leaves no build process: the step is PID 1 of its pid namespace, and the kernel
//! kills the rest of the namespace with it). Network ([`StepNet`]): none (a new,
//! empty network namespace) except for the steps that download from the mirror,
//! which share the host's (see SECURITY.md for what that leaves). When the command
//! ends, its namespaces and every mount in them go away with it. What ends up in
//! the layer is only what the command wrote.
//!
//! Still on the host, as host root: debootstrap's first stage (`--foreign`:
//! download and unpack, no program of the target runs), `fetch`'s download, and
//! [`unpack`]'s own unpacker on the merged layer, in a private mount namespace of its
//! own (`enter`).
//!
//! A `fetch` step's tarball is verified against its sha256 here, opened here, and
//! unpacked by no host `tar`: [`unpack`] runs our own `container __unpack` (see
//! `exec::unpack`) in the layer's namespace (without the apt-cache binds) with the
//! tarball on its stdin, and that resolves every path inside the layer root (as in a
//! chroot, so no symlink reaches the host), refuses `..`, absolute names, device
//! nodes and FIFOs, hard links to anything it did not unpack, and clears setuid,
//! setgid and sticky bits.
//!
//! All output goes to the build log; [`Watch`] lets the caller show progress while a
//! command runs (a single-threaded poll, so the CLI stays single-threaded).

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::harden::Hardening;
use super::sandbox::{self, MountReq, NetNs, Program, RootFs, SandboxSpec};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("`{tool}` is not installed on this host (not on PATH); install it with: {install}")]
    MissingTool { tool: &'static str, install: &'static str },
    #[error("{what} failed ({status}); the build log is {}", log.display())]
    Failed { what: String, status: String, log: PathBuf },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: the build sandbox failed: {source}; the build log is {}", log.display())]
    Sandbox {
        what: String,
        #[source]
        source: crate::exec::sandbox::SandboxError,
        log: PathBuf,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
    let context = context.into();
    move |source| BuildError::Io { context, source }
}

/// Where `tool` is on the caller's PATH (the path it will be run from), if anywhere.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file())
}

fn have_tool(tool: &str) -> bool {
    find_tool(tool).is_some()
}

/// Called while a command runs, about four times a second, with the time it has run
/// and the last line of the log.
pub type Watch<'a> = &'a mut dyn FnMut(Duration, &str);

/// A layer being built, as its command sees it: `lower` (topmost first, read-only)
/// under `upper`, assembled at `merged`.
#[derive(Debug, Clone)]
pub struct LayerFs {
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
    /// Host folders bound into the layer while the command runs: (host, container path).
    pub binds: Vec<(PathBuf, String)>,
}

/// The network of a sandboxed build command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepNet {
    /// A new, empty network namespace (only `lo`, down): nothing reachable.
    Offline,
    /// The host's network namespace, for the steps that download from the mirror
    /// (apt-get update, apt-get install --download-only) only.
    HostNet,
}

impl StepNet {
    /// How `plan` and the log name it.
    pub fn describe(self) -> &'static str {
        match self {
            StepNet::Offline => "no network",
            StepNet::HostNet => "host network",
        }
    }
}

/// Everything the child needs, made before fork (no allocation decisions after).
struct PreparedBuild {
    overlay: CString,
    merged: CString,
    proc_: CString,
    /// (target, mount data): /tmp and /run, so nothing written there stays in the layer.
    tmpfs: Vec<(CString, &'static std::ffi::CStr)>,
    binds: Vec<(CString, CString)>,
}

fn cpath(p: &Path) -> Result<CString, BuildError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| BuildError::Invalid(format!("NUL in path {}", p.display())))
}

fn overlay_options(fs: &LayerFs) -> Result<String, BuildError> {
    let mut lower = Vec::new();
    for l in &fs.lower {
        match l.to_str() {
            Some(s) if !s.contains([':', ',', '\\']) => lower.push(s),
            _ => return Err(BuildError::Invalid(format!("layer path {} has ':', ',' or '\\'", l.display()))),
        }
    }
    let (up, wk) = (fs.upper.display().to_string(), fs.work.display().to_string());
    if [&up, &wk].iter().any(|s| s.contains([':', ','])) {
        return Err(BuildError::Invalid(format!("cache path {up} has ':' or ','")));
    }
    Ok(format!("lowerdir={},upperdir={up},workdir={wk}", lower.join(":")))
}

fn prepare(fs: &LayerFs) -> Result<PreparedBuild, BuildError> {
    for d in [&fs.upper, &fs.work, &fs.merged] {
        std::fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
    }
    let mut binds = Vec::new();
    for (host, target) in &fs.binds {
        let t = fs.merged.join(target.trim_start_matches('/'));
        binds.push((cpath(host)?, cpath(&t)?));
    }
    Ok(PreparedBuild {
        overlay: CString::new(overlay_options(fs)?).map_err(|_| BuildError::Invalid("NUL in a layer path".into()))?,
        merged: cpath(&fs.merged)?,
        proc_: cpath(&fs.merged.join("proc"))?,
        tmpfs: vec![(cpath(&fs.merged.join("tmp"))?, c"mode=1777"), (cpath(&fs.merged.join("run"))?, c"mode=755")],
        binds,
    })
}

fn check(r: libc::c_int) -> std::io::Result<()> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// In the forked child, before exec: a private mount namespace with the layer
/// assembled in it at `merged` (for the unpacker, which resolves every path in it).
fn enter(p: &PreparedBuild) -> std::io::Result<()> {
    let none = std::ptr::null::<libc::c_char>();
    // SAFETY: plain syscalls on NUL-terminated strings prepared before fork.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS))?;
        check(libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()))?;
        check(libc::mount(c"overlay".as_ptr(), p.merged.as_ptr(), c"overlay".as_ptr(), 0, p.overlay.as_ptr().cast()))?;
        check(libc::mount(c"proc".as_ptr(), p.proc_.as_ptr(), c"proc".as_ptr(), 0, std::ptr::null()))?;
        for (t, data) in &p.tmpfs {
            check(libc::mount(c"tmpfs".as_ptr(), t.as_ptr(), c"tmpfs".as_ptr(), 0, data.as_ptr().cast()))?;
        }
        for (src, dst) in &p.binds {
            check(libc::mount(src.as_ptr(), dst.as_ptr(), none, libc::MS_BIND, std::ptr::null()))?;
        }
    }
    Ok(())
}

const BUILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment of build commands: nothing of the caller's but a sane PATH.
const BUILD_ENV: [(&str, &str); 5] = [
    ("PATH", BUILD_PATH),
    ("HOME", "/root"),
    ("LC_ALL", "C.UTF-8"),
    ("DEBIAN_FRONTEND", "noninteractive"),
    ("DEBCONF_NONINTERACTIVE_SEEN", "true"),
];

fn clean_env(cmd: &mut Command) {
    cmd.env_clear().envs(BUILD_ENV);
}

/// Append a line to the build log.
pub fn log_line(log: &Path, line: &str) -> Result<(), BuildError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io(format!("opening {}", log.display())))?;
    writeln!(f, "{line}").map_err(io(format!("writing {}", log.display())))
}

/// The last non-empty line of the log (for progress), at most 200 bytes of it.
fn last_line(log: &Path) -> String {
    let Ok(mut f) = File::open(log) else { return String::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(1024);
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let line = text.split(['\n', '\r']).rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    line.chars().take(200).collect()
}

/// Run `cmd` with its output appended to `log`, polling `watch`; an error names
/// `what` and the log.
fn run_logged(cmd: Command, what: &str, log: &Path, watch: Watch) -> Result<(), BuildError> {
    run_logged_input(cmd, Stdio::null(), what, log, watch)
}

/// [`run_logged`] with `stdin` as the command's standard input.
fn run_logged_input(mut cmd: Command, stdin: Stdio, what: &str, log: &Path, watch: Watch) -> Result<(), BuildError> {
    log_line(log, &format!("$ {what}"))?;
    let out = std::fs::OpenOptions::new().append(true).open(log).map_err(io(format!("opening {}", log.display())))?;
    let err = out.try_clone().map_err(io("dup the log"))?;
    cmd.stdin(stdin).stdout(out).stderr(err);
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(io(format!("starting {what}")))?;
    let status: ExitStatus = loop {
        match child.try_wait().map_err(io(format!("waiting for {what}")))? {
            Some(s) => break s,
            None => {
                watch(start.elapsed(), &last_line(log));
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    };
    log_line(log, &format!("# {what}: {status} after {:.1} s", start.elapsed().as_secs_f64()))?;
    if status.success() {
        Ok(())
    } else {
        Err(BuildError::Failed { what: what.to_string(), status: status.to_string(), log: log.to_path_buf() })
    }
}

/// The argv of debootstrap's first stage (`--foreign`: download and unpack on the
/// host; nothing of the target runs) of `suite` into `target`, keeping the
/// downloaded packages in `debs`.
pub fn debootstrap_first_stage_argv(suite: &str, mirror: &str, arch: &str, target: &str, debs: &str) -> Vec<String> {
    vec![
        "debootstrap".into(),
        "--foreign".into(),
        "--variant=minbase".into(),
        format!("--arch={arch}"),
        format!("--cache-dir={debs}"),
        suite.into(),
        target.into(),
        mirror.into(),
    ]
}

/// The argv of debootstrap's second stage, run in the sandbox on the new base
/// (dpkg and the maintainer scripts of every base package), without network.
pub fn debootstrap_second_stage_argv() -> Vec<String> {
    vec!["/debootstrap/debootstrap".into(), "--second-stage".into()]
}

/// `debootstrap --variant=minbase` of `suite` into `target`, keeping the downloaded
/// packages in `debs` (shared with later apt runs): the first stage on the host,
/// the second in the sandbox with `target` as its writable root and no network.
pub fn debootstrap(
    suite: &str,
    mirror: &str,
    arch: &str,
    target: &Path,
    debs: &Path,
    log: &Path,
    watch: Watch,
) -> Result<(), BuildError> {
    let Some(exe) = find_tool("debootstrap") else {
        return Err(BuildError::MissingTool { tool: "debootstrap", install: "apt-get install -y debootstrap" });
    };
    std::fs::create_dir_all(debs).map_err(io(format!("creating {}", debs.display())))?;
    let argv =
        debootstrap_first_stage_argv(suite, mirror, arch, &target.display().to_string(), &debs.display().to_string());
    let mut cmd = Command::new(exe);
    clean_env(&mut cmd);
    cmd.args(&argv[1..]);
    let what = format!("debootstrap --foreign --variant=minbase --arch={arch} {suite} {mirror}");
    run_logged(cmd, &what, log, &mut *watch)?;
    // In a container (docker) the first stage makes /proc a symlink to /proc; the
    // second stage would replace it with a folder before mounting, and the sandbox
    // needs the folder for its own /proc now.
    let proc_ = target.join("proc");
    if std::fs::symlink_metadata(&proc_).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(&proc_).map_err(io(format!("removing the symlink {}", proc_.display())))?;
        std::fs::create_dir(&proc_).map_err(io(format!("creating {}", proc_.display())))?;
    }
    let mut spec =
        build_spec(RootFs::Dir(target.to_path_buf()), debootstrap_second_stage_argv(), StepNet::Offline, &[])?;
    // debootstrap's word for "in a container": it then skips its mknod test of the
    // target (no MKNOD here, and the root is nodev: device nodes do nothing in it).
    spec.env.insert("container".into(), "lxc".into());
    run_sandboxed(&spec, "debootstrap --second-stage", log, watch)
}

/// `name` found in the layer stack `dirs` (topmost first) in a folder of the build
/// PATH, as the absolute path the sandbox execs; an absolute `name` as it is. Only a
/// lookup: the exec itself happens inside the layer.
fn resolve_program(name: &str, dirs: &[&Path]) -> Result<String, BuildError> {
    if name.starts_with('/') {
        return Ok(name.to_string());
    }
    if name.is_empty() || name.contains('/') {
        return Err(BuildError::Invalid(format!("program {name:?} is neither absolute nor a plain name")));
    }
    for folder in BUILD_PATH.split(':') {
        let rel = folder.trim_start_matches('/');
        if dirs.iter().any(|d| std::fs::symlink_metadata(d.join(rel).join(name)).is_ok()) {
            return Ok(format!("{folder}/{name}"));
        }
    }
    Err(BuildError::Invalid(format!("`{name}` is not in the layer (looked in {BUILD_PATH})")))
}

/// The sandbox of one build command: `root`, `argv` (argv[0] absolute in the root),
/// `net`, and `binds` (host, container path): folders read-write, files read-only.
fn build_spec(
    root: RootFs,
    argv: Vec<String>,
    net: StepNet,
    binds: &[(PathBuf, String)],
) -> Result<SandboxSpec, BuildError> {
    let mut spec = SandboxSpec::new("build", root, Program::Path(argv));
    spec.readonly_root = false;
    spec.net = match net {
        StepNet::Offline => NetNs::New,
        StepNet::HostNet => NetNs::Host,
    };
    spec.env = BUILD_ENV.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    spec.hardening =
        Some(Hardening::for_build().map_err(|e| BuildError::Invalid(format!("the build's seccomp filter: {e}")))?);
    spec.die_with_parent = true;
    for (host, target) in binds {
        spec.mounts.push(MountReq::bind(target, host, !host.is_dir()));
    }
    Ok(spec)
}

/// Run the sandbox `spec` with its output appended to `log`, polling `watch`, as
/// `run_logged` does for host programs.
fn run_sandboxed(spec: &SandboxSpec, what: &str, log: &Path, watch: Watch) -> Result<(), BuildError> {
    log_line(log, &format!("$ {what}"))?;
    let open = || -> Result<std::os::fd::OwnedFd, BuildError> {
        let f = std::fs::OpenOptions::new().append(true).open(log).map_err(io(format!("opening {}", log.display())))?;
        Ok(f.into())
    };
    let null = File::open("/dev/null").map_err(io("opening /dev/null"))?;
    let stdio = sandbox::Stdio { stdin: Some(null.into()), stdout: Some(open()?), stderr: Some(open()?) };
    let start = Instant::now();
    let sandboxed = |source| BuildError::Sandbox { what: what.to_string(), source, log: log.to_path_buf() };
    let pending = sandbox::spawn(spec, stdio).map_err(sandboxed)?;
    let init = pending.release().map_err(sandboxed)?;
    let pid = nix::unistd::Pid::from_raw(init.pid);
    let status = loop {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => break (c == 0, format!("exit status: {c}")),
            Ok(WaitStatus::Signaled(_, sig, _)) => break (false, format!("killed by {sig}")),
            Ok(_) | Err(nix::Error::EINTR) => {
                watch(start.elapsed(), &last_line(log));
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => return Err(io(format!("waiting for {what}"))(e.into())),
        }
    };
    log_line(log, &format!("# {what}: {} after {:.1} s", status.1, start.elapsed().as_secs_f64()))?;
    if status.0 {
        Ok(())
    } else {
        Err(BuildError::Failed { what: what.to_string(), status: status.1, log: log.to_path_buf() })
    }
}

/// Run the layer's program `argv` (argv[0] absolute, or a name looked up in the
/// build PATH of the layer) in the build sandbox with network `net`.
pub fn run_in_layer_net(
    fs: &LayerFs,
    argv: &[String],
    net: StepNet,
    log: &Path,
    watch: Watch,
) -> Result<(), BuildError> {
    let (prog, args) = argv.split_first().ok_or_else(|| BuildError::Invalid("an empty command".into()))?;
    for d in [&fs.upper, &fs.work] {
        std::fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
    }
    let mut dirs: Vec<&Path> = vec![&fs.upper];
    dirs.extend(fs.lower.iter().map(PathBuf::as_path));
    let mut full = vec![resolve_program(prog, &dirs)?];
    full.extend(args.iter().cloned());
    let root = RootFs::Build { lower: fs.lower.clone(), upper: fs.upper.clone(), work: fs.work.clone() };
    let spec = build_spec(root, full, net, &fs.binds)?;
    let what = match net {
        StepNet::Offline => argv.join(" "),
        StepNet::HostNet => format!("{} ({})", argv.join(" "), net.describe()),
    };
    run_sandboxed(&spec, &what, log, watch)
}

/// Hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String, BuildError> {
    use sha2::Digest;
    let mut f = File::open(path).map_err(io(format!("opening {}", path.display())))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io(format!("reading {}", path.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A fetch URL as `fetch` takes it: a relative path (a file next to the spec) made
/// absolute against `spec_dir`; URLs and absolute paths unchanged.
pub fn resolve_local(url: &str, spec_dir: &Path) -> String {
    if url.contains("://") || url.starts_with('/') {
        url.to_string()
    } else {
        spec_dir.join(url).display().to_string()
    }
}

/// The file behind a fetch URL, verified against `sha256`: a local path (absolute or
/// `file://`) as it is, an http(s) URL downloaded once into `downloads`.
pub fn fetch(url: &str, sha256: &str, downloads: &Path, log: &Path, watch: Watch) -> Result<PathBuf, BuildError> {
    let want = sha256.to_ascii_lowercase();
    let verify = |p: &Path| -> Result<(), BuildError> {
        let got = sha256_file(p)?;
        if got == want {
            Ok(())
        } else {
            Err(BuildError::Invalid(format!("{url}: sha256 is {got}, the spec says {want}")))
        }
    };
    if let Some(local) = url.strip_prefix("file://").or(url.starts_with('/').then_some(url)) {
        let p = PathBuf::from(local);
        if !p.is_file() {
            return Err(BuildError::Invalid(format!("{url}: no such file")));
        }
        verify(&p)?;
        log_line(log, &format!("# fetch {url}: local file, sha256 verified"))?;
        return Ok(p);
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(BuildError::Invalid(format!("{url}: a fetch URL is http(s)://, file:// or an absolute path")));
    }
    std::fs::create_dir_all(downloads).map_err(io(format!("creating {}", downloads.display())))?;
    let dest = downloads.join(&want);
    if dest.is_file() && verify(&dest).is_ok() {
        log_line(log, &format!("# fetch {url}: reused the download {}", dest.display()))?;
        return Ok(dest);
    }
    if !have_tool("curl") {
        return Err(BuildError::MissingTool { tool: "curl", install: "apt-get install -y curl" });
    }
    let tmp = downloads.join(format!(".{want}.part"));
    let mut cmd = Command::new("curl");
    cmd.args(["-fsSL", "--retry", "2", "-o"]).arg(&tmp).arg(url);
    run_logged(cmd, &format!("curl {url}"), log, watch)?;
    verify(&tmp)?;
    std::fs::rename(&tmp, &dest).map_err(io(format!("keeping {}", dest.display())))?;
    Ok(dest)
}

/// Unpack a tarball (gzip, bzip2, xz, zstd or none) into `dest` of the layer, files
/// owned by root, dropping `strip` leading path components: `container __unpack`
/// (see `exec::unpack`) as a host program in the layer's mount namespace, the
/// tarball on its stdin (opened here), every path resolved inside the layer root.
pub fn unpack(
    fs: &LayerFs,
    tarball: &Path,
    dest: &str,
    strip: u32,
    log: &Path,
    watch: Watch,
) -> Result<(), BuildError> {
    let rel = dest.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return Err(BuildError::Invalid(format!("unpack destination {dest} contains \"..\"")));
    }
    let file = File::open(tarball).map_err(io(format!("opening {}", tarball.display())))?;
    if !file.metadata().map_err(io(format!("reading {}", tarball.display())))?.is_file() {
        return Err(BuildError::Invalid(format!("{} is not a regular file", tarball.display())));
    }
    // Without the apt caches: nothing of the host is in the namespace but the layer
    // (and the /proc, /tmp and /run mounts, which the unpacker does not cross).
    let fs = LayerFs { binds: Vec::new(), ..fs.clone() };
    let prepared = prepare(&fs)?;
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg(super::unpack::UNPACK_ARG).arg(&fs.merged).arg(format!("/{rel}")).arg(strip.to_string());
    clean_env(&mut cmd);
    cmd.current_dir("/");
    // SAFETY: `enter` makes only syscalls on data prepared before the fork, and the
    // CLI is single-threaded, so nothing can hold a lock the child would need.
    unsafe {
        cmd.pre_exec(move || enter(&prepared));
    }
    let name = tarball.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let what = format!("unpack {name} into /{rel} (strip {strip})");
    run_logged_input(cmd, Stdio::from(file), &what, log, watch).map_err(|e| match e {
        BuildError::Failed { what, status, log } => match unpack_reason(&log) {
            Some(why) => BuildError::Invalid(format!("{what}: {why}; the build log is {}", log.display())),
            None => BuildError::Failed { what, status, log },
        },
        e => e,
    })
}

/// The unpacker's reason for failing, from the end of the build log.
fn unpack_reason(log: &Path) -> Option<String> {
    let text = std::fs::read(log).ok()?;
    let tail = &text[text.len().saturating_sub(8192)..];
    let prefix = format!("container {}: ", super::unpack::UNPACK_ARG);
    String::from_utf8_lossy(tail)
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(&prefix).map(|s| s.chars().take(400).collect()))
}

/// Lower folders of every overlay mounted in any mount namespace on the host
/// (running containers, builds), read from each namespace's mountinfo once.
pub fn mounted_overlay_lowers() -> Vec<PathBuf> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else { return out };
    for e in rd.flatten() {
        let pid = e.file_name();
        if !pid.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(ns) = std::fs::read_link(e.path().join("ns/mnt")) else { continue };
        if !seen.insert(ns) {
            continue;
        }
        let Ok(info) = std::fs::read_to_string(e.path().join("mountinfo")) else { continue };
        for line in info.lines().filter(|l| l.contains(" - overlay ")) {
            for opt in line.rsplit(' ').next().unwrap_or("").split(',') {
                if let Some(lower) = opt.strip_prefix("lowerdir=") {
                    out.extend(lower.split(':').map(PathBuf::from));
                }
            }
        }
    }
    out
}
