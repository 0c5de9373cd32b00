//! Escapes from a build step, tried for real: a hook adds a `run` step to a spec's
//! package layer (as a module's `useradd` or a package's maintainer script would run,
//! as root of the build), and that step tries to reach the host. It writes what it
//! managed into `/report` in the layer; the test reads the built layer and checks
//! the host.
//!
//! The step tries to (a) read a file the test planted on the host, through
//! `/proc/1/root`, through `/proc/<host pid>/root` and by the classic chroot escape
//! (chroot into a subfolder without chdir, `..` up, chroot `.`); (b) write host files
//! the same ways; (c) see and signal a `sleep` the test runs on the host; (d) connect
//! to a listener the test opens on the host's loopback; (e) call `mount`, `unshare`
//! and an empty `init_module` (nothing is loaded: the image is empty). Every one must
//! fail and the host stay unchanged.
//!
//! End-to-end tier (`require_e2e!`: reuses the Debian base of the shared cache, runs
//! apt-get update). Containers are named `esc-b-*`; no addresses are used (salt 79
//! is this file's, unused: the listener is on 127.0.0.1 with a port of the kernel's).

mod support;

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::*;

/// The attack, as a POSIX shell script in the layer (Debian's minbase has sh, bash
/// and perl-base). Each line of `/report` is `NAME ok` (it worked: an escape) or
/// `NAME blocked`.
const ATTACK: &str = r#"
R=/report; : > $R
say() { if [ "$2" = 0 ]; then echo "$1 ok" >> $R; else echo "$1 blocked" >> $R; fi; }
# (a) read the host's marker
grep -q "$SECRET" "/proc/1/root$MARK" 2>/dev/null; say read_proc1_root $?
grep -q "$SECRET" "/proc/$HOSTPID/root$MARK" 2>/dev/null; say read_hostpid_root $?
perl -e 'mkdir "/esc"; chroot "/esc" or exit 2; chdir ".." for 1..64; chroot "." or exit 3;
  open(F, "<", $ENV{MARK}) or exit 4; my $l = <F>; exit($l =~ /$ENV{SECRET}/ ? 0 : 5)'; say read_chroot_escape $?
# (b) write host files (a write may land in the layer's own /var/tmp: only the
# host can tell, and the test checks there)
echo pwned > "/proc/1/root$W1" 2>/dev/null; echo "write_proc1_root tried" >> $R
ln -s "/proc/$HOSTPID/root/var/tmp" /hostvartmp 2>/dev/null; echo pwned > "/hostvartmp/$(basename $W2)" 2>/dev/null
echo "write_symlink_hostpid tried" >> $R
perl -e 'chroot "/esc" or exit 2; chdir ".." for 1..64; chroot "." or exit 3;
  open(F, ">", $ENV{W3}) or exit 4; print F "pwned\n"; close F; exit 0'; echo "write_chroot_escape tried" >> $R
mkdir -p /mnt/x; mount -t tmpfs none /mnt/x 2>/dev/null; say mount_tmpfs $?
mount --bind /proc/1/root/var/tmp /mnt/x 2>/dev/null; say mount_bind $?
# (c) see and signal the host's sleep
[ -d "/proc/$HOSTPID" ]; say see_hostpid $?
kill -0 "$HOSTPID" 2>/dev/null; say signal0_hostpid $?
kill -STOP "$HOSTPID" 2>/dev/null; R2=$?; kill -CONT "$HOSTPID" 2>/dev/null; say stop_hostpid $R2
# (d) the host's loopback
timeout 5 bash -c "echo hello > /dev/tcp/127.0.0.1/$PORT" 2>/dev/null; say connect_host_loopback $?
# (e) system calls a build step has no business with (x86_64 numbers; an empty module
# image could never load, the point is whether the kernel looks at it at all)
perl -e '$! = 0; my $r = syscall(175, "", 0, ""); exit($!{EPERM} ? 1 : 0)'; say init_module $?
perl -e 'my $r = syscall(272, 0x00020000); exit($r == 0 ? 0 : 1)'; say unshare_mount_ns $?
perl -e 'my $r = syscall(272, 0x10000000); exit($r == 0 ? 0 : 1)'; say unshare_user_ns $?
perl -e 'my $r = syscall(165, "none", "/mnt/x", "tmpfs", 0, 0); exit($r == 0 ? 0 : 1)'; say mount_syscall $?
echo done >> $R
"#;

const NAMES: [&str; 17] = [
    "read_proc1_root",
    "read_hostpid_root",
    "read_chroot_escape",
    "write_proc1_root",
    "write_symlink_hostpid",
    "write_chroot_escape",
    "mount_tmpfs",
    "mount_bind",
    "see_hostpid",
    "signal0_hostpid",
    "stop_hostpid",
    "connect_host_loopback",
    "init_module",
    "unshare_mount_ns",
    "unshare_user_ns",
    "mount_syscall",
    "done",
];

/// Host files the attack aims at, removed when the test ends however it ends.
struct Planted(Vec<PathBuf>);

impl Drop for Planted {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn rhai_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
}

#[test]
fn a_build_step_cannot_reach_host_files_processes_or_network() {
    require_e2e!();
    let tag = format!("{}-{}", std::process::id(), Instant::now().elapsed().as_nanos());
    let secret = format!("host-secret-{tag}");
    let mark = PathBuf::from(format!("/var/tmp/ct-esc-b-{tag}-read"));
    let w: Vec<PathBuf> = (1..=3).map(|i| PathBuf::from(format!("/var/tmp/ct-esc-b-{tag}-w{i}"))).collect();
    let _planted = Planted([vec![mark.clone()], w.clone()].concat());
    std::fs::write(&mark, format!("{secret}\n")).unwrap();
    let mut sleeper = std::process::Command::new("sleep").arg("600").spawn().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();

    let env = [
        ("SECRET", secret.clone()),
        ("MARK", mark.display().to_string()),
        ("W1", w[0].display().to_string()),
        ("W2", w[1].display().to_string()),
        ("W3", w[2].display().to_string()),
        ("HOSTPID", sleeper.id().to_string()),
        ("PORT", port.to_string()),
    ];
    let script: String = env.iter().map(|(k, v)| format!("export {k}='{v}'\n")).collect::<String>() + ATTACK;
    let ct = Ct::new(
        "esc-b-steps",
        "base = \"debian:trixie\"\n[network]\nmode = \"none\"\n\
         [processes.main]\ncommand = [\"/bin/sleep\", \"infinity\"]\n[[hooks]]\nscript = \"attack.rhai\"\n",
    );
    let hook = format!(
        "fn on_plan(plan) {{\n    plan.layer.steps.push(#{{ run: [\"/bin/sh\", \"-c\", {}] }});\n    plan\n}}\n",
        rhai_str(&script)
    );
    std::fs::write(ct.dir.path().join("attack.rhai"), hook).unwrap();

    let out = run(&["build", ct.spec().to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "the build failed:\n{stdout}\n{}", text(&out.stderr));
    let pkg = stdout
        .split_whitespace()
        .find(|w| w.starts_with("pkg-"))
        .unwrap_or_else(|| panic!("no layer id in {stdout}"))
        .to_string();
    let layer = cache().join("layers").join(&pkg);
    let report = std::fs::read_to_string(layer.join("root/report"));
    // The layer holds host-specific junk: never reused by another run.
    let _ = std::fs::remove_dir_all(&layer);
    let report = report.expect("the step wrote its report into the layer");

    // Host unchanged: no file written, the sleep alive and never stopped, nothing
    // connected to the listener.
    for f in &w {
        assert!(!f.exists(), "the build step wrote the host file {}", f.display());
    }
    assert_eq!(std::fs::read_to_string(&mark).unwrap(), format!("{secret}\n"));
    assert!(sleeper.try_wait().unwrap().is_none(), "the host's sleep is gone");
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", sleeper.id())).unwrap();
    assert!(!stat.contains(") T "), "the host's sleep is stopped: {stat}");
    let deadline = Instant::now() + Duration::from_millis(200);
    let connected = loop {
        match listener.accept() {
            Ok((mut s, _)) => {
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                break Some(buf);
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(connected, None, "the build step reached the host's loopback");

    let lines: Vec<&str> = report.lines().collect();
    let names: Vec<&str> = lines.iter().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(names, NAMES, "the report is incomplete:\n{report}");
    let escaped: Vec<&str> = lines.iter().copied().filter(|l| l.ends_with(" ok")).collect();
    assert!(escaped.is_empty(), "the build step got through: {escaped:?}\n{report}");
}
