//! Real containers (root only): each test starts its own container with
//! `exec::sandbox` (`/bin/sleep` as PID 1, a new network namespace) and runs
//! commands in it with `exec::attach`. Nothing waits on a clock: output is awaited
//! (with a generous deadline that only turns a hang into a failure). Host tier
//! (`require_host!`), but for the probe another test runs in a fresh process.

mod support;
use container::exec::attach::{exec, AttachError, ExecOpts, Stdio};
use container::exec::sandbox::{spawn, IdMap, IdRange, InitProcess, NetNs, Program, RootFs, SandboxSpec};
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const HOSTNAME: &str = "ctt-attach";
/// Only a deadlock would take this long; never used to wait for something to happen.
const HANG: Duration = Duration::from_secs(120);

/// A running container; killed and reaped on drop.
struct Container {
    child: InitProcess,
}

impl Container {
    fn start() -> Self {
        Self::start_with(|_| {})
    }

    fn start_with(edit: impl FnOnce(&mut SandboxSpec)) -> Self {
        let program = Program::Path(vec!["/bin/sleep".into(), "1000".into()]);
        let mut spec = SandboxSpec::new(HOSTNAME, RootFs::Host, program);
        spec.net = NetNs::New;
        edit(&mut spec);
        let null = || Some(OwnedFd::from(File::options().read(true).write(true).open("/dev/null").expect("/dev/null")));
        let pending = spawn(&spec, Stdio { stdin: null(), stdout: null(), stderr: null() }).expect("spawn");
        Container { child: pending.release().expect("release") }
    }

    fn pid(&self) -> i32 {
        self.child.pid
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // Not reaped yet, so the pid is still the container's.
        // SAFETY: kill takes integers only; the pid is our unreaped child, so it
        // cannot have been reused by another process.
        unsafe { libc::kill(self.child.pid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Collects what a reader thread reads, chunk by chunk.
struct Stream {
    rx: mpsc::Receiver<Vec<u8>>,
    text: String,
}

impl Stream {
    fn new(mut r: impl Read + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n @ 1..) = r.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Stream { rx, text: String::new() }
    }

    /// Read until `needle` has arrived.
    fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + HANG;
        while !self.text.contains(needle) {
            match self.rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(chunk) => self.text.push_str(&String::from_utf8_lossy(&chunk)),
                Err(e) => panic!("waiting for {needle:?}: {e}; got {:?}", self.text),
            }
        }
    }

    /// Everything until the writers closed.
    fn finish(mut self) -> String {
        loop {
            match self.rx.recv_timeout(HANG) {
                Ok(chunk) => self.text.push_str(&String::from_utf8_lossy(&chunk)),
                Err(mpsc::RecvTimeoutError::Disconnected) => return self.text,
                Err(e) => panic!("stream never closed: {e}; got {:?}", self.text),
            }
        }
    }
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Run `opts` in `c` with `input` on stdin and stdout/stderr on pipes.
fn try_run(c: &Container, opts: &ExecOpts, input: &[u8]) -> Result<Output, AttachError> {
    let (in_r, mut in_w) = pipe();
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let input = input.to_vec();
    // A command that does not read makes this fail with EPIPE once it is gone.
    let writer = thread::spawn(move || {
        let _ = in_w.write_all(&input);
    });
    let (out, err) = (Stream::new(out_r), Stream::new(err_r));
    let stdio = Stdio { stdin: Some(in_r.into()), stdout: Some(out_w.into()), stderr: Some(err_w.into()) };
    let code = exec(c.pid(), opts, stdio)?;
    writer.join().expect("writer");
    Ok(Output { code, stdout: out.finish(), stderr: err.finish() })
}

fn run(c: &Container, opts: &ExecOpts, input: &[u8]) -> Output {
    try_run(c, opts, input).expect("exec")
}

/// (read end, write end), both close-on-exec.
fn pipe() -> (File, File) {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    (File::from(r), File::from(w))
}

fn sh(script: &str) -> ExecOpts {
    ExecOpts::new(vec!["sh".into(), "-c".into(), script.into()])
}

fn tty(mut opts: ExecOpts) -> ExecOpts {
    opts.tty = true;
    opts
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().map(|l| l.trim_end_matches('\r')).collect()
}

fn host_ns(pid: i32, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).expect("readlink ns").to_string_lossy().into_owned()
}

#[test]
fn exit_code_passes_through() {
    require_host!();
    let c = Container::start();
    assert_eq!(run(&c, &sh("exit 7"), b"").code, 7);
    assert_eq!(run(&c, &ExecOpts::new(vec!["true".into()]), b"").code, 0);
    assert_eq!(run(&c, &ExecOpts::new(vec!["false".into()]), b"").code, 1);
}

#[test]
fn death_by_signal_gives_128_plus_the_signal() {
    require_host!();
    let c = Container::start();
    assert_eq!(run(&c, &sh("kill -TERM $$"), b"").code, 128 + libc::SIGTERM);
    assert_eq!(run(&c, &sh("kill -KILL $$"), b"").code, 128 + libc::SIGKILL);
}

#[test]
fn stdin_streams_through_and_stderr_is_separate() {
    require_host!();
    let c = Container::start();
    // 4 MiB: far more than any pipe holds, so it only passes if it streams.
    let input: Vec<u8> = (0..4u32 << 20).map(|i| b"abcdefghijklmnopqrstuvwxyz\n"[(i % 27) as usize]).collect();
    let out = run(&c, &sh("cat; echo on-stderr >&2"), &input);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.len(), input.len());
    assert!(out.stdout.as_bytes() == input, "stdout differs from stdin");
    assert_eq!(out.stderr, "on-stderr\n");
}

#[test]
fn output_arrives_while_the_command_runs() {
    require_host!();
    let c = Container::start();
    let pid = c.pid();
    let (in_r, mut in_w) = pipe();
    let (out_r, out_w) = pipe();
    let opts = sh("echo ready; read line; echo \"got $line\"");
    let stdio = Stdio { stdin: Some(in_r.into()), stdout: Some(out_w.into()), stderr: None };
    let running = thread::spawn(move || exec(pid, &opts, stdio));
    let mut out = Stream::new(out_r);
    // The command is blocked reading stdin, so "ready" can only come from a stream.
    out.wait_for("ready\n");
    in_w.write_all(b"ping\n").expect("write stdin");
    drop(in_w);
    assert_eq!(running.join().expect("exec thread").expect("exec"), 0);
    assert_eq!(out.finish(), "ready\ngot ping\n");
}

#[test]
fn sees_the_containers_hostname() {
    require_host!();
    let c = Container::start();
    let out = run(&c, &sh("cat /proc/sys/kernel/hostname; uname -n"), b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(lines(&out.stdout), [HOSTNAME, HOSTNAME]);
}

#[test]
fn runs_in_the_containers_pid_namespace() {
    require_host!();
    let c = Container::start();
    // The glob is expanded before any `cat` runs: the processes are PID 1 and the shell.
    let out = run(&c, &sh("echo $$; for p in /proc/[0-9]*; do echo \"${p#/proc/} $(cat $p/comm)\"; done"), b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let all = lines(&out.stdout);
    let me: u32 = all[0].parse().expect("a pid");
    assert!(me > 1 && me < 100, "shell pid {me} is not from the container's namespace");
    let procs: BTreeSet<String> = all[1..].iter().map(|s| s.to_string()).collect();
    assert_eq!(procs, BTreeSet::from(["1 sleep".to_string(), format!("{me} sh")]));
}

#[test]
fn joins_every_namespace_of_the_container() {
    require_host!();
    let c = Container::start();
    let kinds = ["ipc", "uts", "net", "mnt", "pid", "cgroup"];
    let script: String = kinds.iter().map(|k| format!("readlink /proc/self/ns/{k}; ")).collect();
    let out = run(&c, &sh(&script), b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let inside = lines(&out.stdout);
    for (k, seen) in kinds.iter().zip(&inside) {
        assert_eq!(*seen, host_ns(c.pid(), k), "{k} namespace");
        assert_ne!(*seen, host_ns(std::process::id() as i32, k), "{k} namespace is the host's");
    }
    assert_eq!(inside.len(), kinds.len());
}

#[test]
fn sees_only_the_containers_network() {
    require_host!();
    let c = Container::start();
    let out = run(&c, &sh("ls /sys/class/net; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"), b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(lines(&out.stdout), ["lo", "lo"]);
}

#[test]
fn sees_the_containers_root() {
    require_host!();
    let c = Container::start();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("secret"), "x").expect("write");
    let d = dir.path().display();
    let out = run(&c, &sh(&format!("test -e {d}/secret && echo visible || echo hidden; ls -A /root | wc -l")), b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(lines(&out.stdout), ["hidden", "0"]);
    // The container's /tmp is its own tmpfs, and the same one for every exec.
    let mark = format!("/tmp/ctt-attach-mark-{}", std::process::id());
    assert_eq!(run(&c, &sh(&format!("echo kept > {mark}")), b"").code, 0);
    let out = run(&c, &sh(&format!("cat {mark}")), b"");
    assert_eq!(out.stdout, "kept\n", "{}", out.stderr);
    assert!(!std::path::Path::new(&mark).exists(), "written to the host's /tmp");
}

#[test]
fn workdir_and_environment_are_exactly_as_given() {
    require_host!();
    let c = Container::start();
    let mut opts = ExecOpts::new(vec!["env".into()]);
    opts.env.insert("HOME".into(), "/root".into());
    opts.env.insert("CTT_VALUE".into(), "a b=c".into());
    let out = run(&c, &opts, b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let want: BTreeSet<String> = opts.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(out.stdout.lines().map(str::to_string).collect::<BTreeSet<_>>(), want);

    let mut opts = ExecOpts::new(vec!["pwd".into()]);
    opts.workdir = "/usr/bin".into();
    assert_eq!(run(&c, &opts, b"").stdout, "/usr/bin\n");
    // A relative program name is found in the command's PATH, not ours.
    let mut opts = ExecOpts::new(vec!["sh".into(), "-c".into(), "echo $0".into()]);
    opts.env.insert("PATH".into(), "/nonexistent:/usr/bin".into());
    assert_eq!(run(&c, &opts, b"").stdout, "sh\n");
}

#[test]
fn missing_workdir_is_a_clear_error() {
    require_host!();
    let c = Container::start();
    let mut opts = sh("true");
    opts.workdir = "/ctt-nonexistent".into();
    let err = try_run(&c, &opts, b"").err().expect("must fail");
    let msg = err.to_string();
    assert!(msg.contains(&format!("cannot enter container process {}", c.pid())), "{msg}");
    assert!(msg.contains("change directory to /ctt-nonexistent"), "{msg}");
    assert!(msg.contains("No such file or directory"), "{msg}");
}

#[test]
fn missing_command_gives_127_and_a_message() {
    require_host!();
    let c = Container::start();
    let out = run(&c, &ExecOpts::new(vec!["ctt-no-such-command".into()]), b"");
    assert_eq!(out.code, 127);
    assert_eq!(out.stderr, "container: ctt-no-such-command: command not found\n");
    let out = run(&c, &ExecOpts::new(vec!["/ctt/no-such-program".into()]), b"");
    assert_eq!(out.code, 127);
    assert_eq!(out.stderr, "container: /ctt/no-such-program: No such file or directory\n");
    let out = run(&c, &ExecOpts::new(vec!["/etc/passwd".into()]), b"");
    assert_eq!(out.code, 126);
    assert_eq!(out.stderr, "container: /etc/passwd: Permission denied\n");
    assert_eq!(out.stdout, "");
}

#[test]
fn no_fds_leak_into_the_command() {
    require_host!();
    let c = Container::start();
    // An fd without O_CLOEXEC: a plain fork+exec would hand it on.
    // SAFETY: a static NUL-terminated path; the fd returned is ours (closed below).
    let leaked = unsafe { libc::open(c"/etc/hostname".as_ptr(), libc::O_RDONLY) };
    assert!(leaked >= 0);
    let out = run(&c, &ExecOpts::new(vec!["ls".into(), "/proc/self/fd".into()]), b"");
    let in_tty = run(&c, &tty(ExecOpts::new(vec!["ls".into(), "/proc/self/fd".into()])), b"");
    // SAFETY: `leaked` is the fd opened above; nothing else owns or closes it.
    unsafe { libc::close(leaked) };
    // 0 1 2, plus the directory ls opened to list.
    assert_eq!(lines(&out.stdout), ["0", "1", "2", "3"], "leaked fd {leaked}? {}", out.stderr);
    assert_eq!(in_tty.stdout.split_whitespace().collect::<Vec<_>>(), ["0", "1", "2", "3"], "with a terminal");
}

#[test]
fn the_command_leads_a_fresh_session() {
    require_host!();
    let c = Container::start();
    // Fields 5 and 6 of stat: process group and session.
    let out = run(&c, &sh("echo $$; cut -d' ' -f5,6 /proc/$$/stat"), b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let l = lines(&out.stdout);
    assert_eq!(l[1], format!("{0} {0}", l[0]));
}

#[test]
fn a_container_that_is_gone_is_reported() {
    require_host!();
    let c = Container::start();
    // SAFETY: kill takes integers only; the pid is our unreaped child.
    unsafe { libc::kill(c.pid(), libc::SIGKILL) };
    // Wait until it has died, without reaping: a zombie has no namespaces left.
    // SAFETY: siginfo_t is a plain C struct for which all zeroes is valid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid writes one siginfo_t to the live stack `info`; WNOWAIT leaves
    // the child unreaped for the Container's drop.
    let r = unsafe { libc::waitid(libc::P_PID, c.pid() as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
    assert_eq!(r, 0);
    let err = try_run(&c, &sh("true"), b"").err().expect("must fail");
    assert!(matches!(err, AttachError::NotRunning { pid } if pid == c.pid()), "{err:?}");
    assert_eq!(err.to_string(), format!("container process {} is not running", c.pid()));
}

const USERNS_PROBE_ENV: &str = "CTT_ATTACH_USERNS_PROBE";

/// The container with a user namespace starts in a fresh process (this binary, only
/// `userns_probe`): the sandbox's child sets its ids with glibc's setgroups after a
/// raw clone3, which can hang forever when another thread of ours is being created
/// or exiting at that moment, and this binary's other tests start threads all the time.
#[test]
fn joins_the_user_namespace_as_its_root() {
    require_host!();
    let exe = std::env::current_exe().expect("current_exe");
    let out = std::process::Command::new(exe)
        .args(["--exact", "userns_probe", "--nocapture", "--test-threads=1"])
        .env(USERNS_PROBE_ENV, "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the probe");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("USERNS-PROBE-OK"), "{text}");
}

/// Run by `joins_the_user_namespace_as_its_root`; a no-op otherwise.
#[test]
fn userns_probe() {
    if std::env::var_os(USERNS_PROBE_ENV).is_none() {
        return;
    }
    let c = Container::start_with(|s| {
        s.user_ns = Some(IdMap {
            uids: vec![IdRange { inside: 0, outside: 200000, count: 65536 }],
            gids: vec![IdRange { inside: 0, outside: 200000, count: 65536 }],
        })
    });
    let out = run(&c, &sh("id -u; id -g; readlink /proc/self/ns/user; uname -n"), b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(lines(&out.stdout), ["0", "0", host_ns(c.pid(), "user").as_str(), HOSTNAME]);
    println!("USERNS-PROBE-OK");
}

#[test]
fn cgroup_procs_put_the_command_in_the_cgroup() {
    require_host!();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let Some(mnt) = mountinfo.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        (post.split(' ').next() == Some("cgroup2")).then(|| pre.split(' ').nth(4).map(str::to_string))?
    }) else {
        support::tier::skip("a cgroup2 mount");
        return;
    };
    let name = format!("ctt-attach-{}", std::process::id());
    let dir = std::path::Path::new(&mnt).join(&name);
    if let Err(e) = std::fs::create_dir(&dir) {
        support::tier::skip(&format!("a cgroup2 folder this test can create ({}: {e})", dir.display()));
        return;
    }
    let c = Container::start();
    let mut opts = sh("grep '^0::' /proc/self/cgroup");
    opts.cgroup_procs = vec![dir.join("cgroup.procs")];
    let out = try_run(&c, &opts, b"");
    // Empty again once exec returned (the helper too), so it can be removed.
    let removed = std::fs::remove_dir(&dir);
    let out = out.expect("exec");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.trim_end().ends_with(&format!("/{name}")), "{}", out.stdout);
    removed.expect("cgroup empty after exec");
}

#[test]
fn tty_is_a_terminal_from_the_containers_devpts() {
    require_host!();
    let c = Container::start();
    let script =
        "tty; test -t 0 && test -t 1 && test -t 2 && echo all-tty; test -c \"$(tty)\" && echo exists; ls /dev/pts";
    let out = run(&c, &tty(sh(script)), b"");
    assert_eq!(out.code, 0, "{}", out.stdout);
    let l = lines(&out.stdout);
    let n = l[0].strip_prefix("/dev/pts/").unwrap_or_else(|| panic!("not a pts: {:?}", out.stdout));
    assert!(n.parse::<u32>().is_ok(), "{}", l[0]);
    assert_eq!(l[1..3], ["all-tty", "exists"]);
    // `ls` of the container's devpts instance: only its own terminal and ptmx.
    let pts: BTreeSet<&str> = l[3..].iter().flat_map(|s| s.split_whitespace()).collect();
    assert_eq!(pts, BTreeSet::from([n, "ptmx"]));
    assert_eq!(out.stderr, "");
}

#[test]
fn tty_relays_input_output_and_the_exit_code() {
    require_host!();
    let c = Container::start();
    let out = run(&c, &tty(sh("read x; echo \"got:$x\"; exit 3")), b"hello\n");
    assert_eq!(out.code, 3, "{}", out.stdout);
    assert!(lines(&out.stdout).contains(&"got:hello"), "{:?}", out.stdout);
    let out = run(&c, &tty(ExecOpts::new(vec!["ctt-no-such-command".into()])), b"");
    assert_eq!(out.code, 127);
    assert_eq!(out.stderr, "container: ctt-no-such-command: command not found\n");
}

#[test]
fn tty_follows_the_callers_window_size_and_restores_its_modes() {
    require_host!();
    let c = Container::start();
    let pid = c.pid();
    let size = |rows, cols| libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // The caller's terminal: a pty of our own, its slave as our stdin and stdout.
    let pty = nix::pty::openpty(None, None).expect("openpty");
    // SAFETY: TIOCSWINSZ reads one winsize (a temporary alive for the call) on the
    // pty master we own.
    assert_eq!(unsafe { libc::ioctl(pty.master.as_raw_fd(), libc::TIOCSWINSZ, &size(33, 77)) }, 0);
    let modes = |fd: &OwnedFd| {
        // SAFETY: termios is a plain C struct for which all zeroes is valid.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: tcgetattr writes one termios to the live `t`; `fd` is borrowed open.
        assert_eq!(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) }, 0);
        (t.c_iflag, t.c_oflag, t.c_lflag)
    };
    let before = modes(&pty.slave);
    assert_ne!(before.2 & libc::ICANON, 0);
    let stdio = Stdio {
        stdin: Some(pty.slave.try_clone().expect("dup")),
        stdout: Some(pty.slave.try_clone().expect("dup")),
        stderr: Some(pty.slave.try_clone().expect("dup")),
    };
    // On SIGWINCH the shell prints the new size and ends the wait.
    let opts = tty(sh("trap 'stty size; kill $!; exit 5' WINCH; stty size; echo ready; sleep 1000 & wait"));
    let running = thread::spawn(move || exec(pid, &opts, stdio));
    let mut out = Stream::new(File::from(pty.master.try_clone().expect("dup")));
    out.wait_for("ready");
    assert!(out.text.contains("33 77"), "initial size: {:?}", out.text);
    assert_eq!(modes(&pty.slave).2 & (libc::ICANON | libc::ECHO), 0, "our terminal is not raw");

    // SAFETY: as above, one winsize read from a temporary on our pty master.
    assert_eq!(unsafe { libc::ioctl(pty.master.as_raw_fd(), libc::TIOCSWINSZ, &size(40, 100)) }, 0);
    // What a terminal does on resize (it cannot here: it is nobody's controlling one).
    // SAFETY: integers only; SIGWINCH to ourselves is what exec's relay listens for
    // (its default disposition is to ignore it).
    unsafe { libc::kill(libc::getpid(), libc::SIGWINCH) };
    out.wait_for("40 100");
    assert_eq!(running.join().expect("exec thread").expect("exec"), 5);
    assert_eq!(modes(&pty.slave), before, "terminal modes not restored");
}
