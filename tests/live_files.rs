//! Rendered files of a running container change atomically, and new ones are added
//! without recreating it.
//!
//! - a reader loop inside never sees an empty or mixed file while `apply` rewrites it
//!   200 times with different sizes (each version is one line repeated, naming its
//!   count);
//! - a write that fails (ENOSPC) leaves the old content, inside and on the host;
//! - a new file beneath a volume or tmpfs is bound into the running container: PID 1
//!   and every service keep their pids, `plan` shows no recreate.
//!
//! Host tier (`require_host!`): `host`-base containers without a network (so the
//! address salt 109 of this file is not needed yet); names `lf<slice>…`.

mod support;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use support::*;

const SALT: u32 = 109;
static COUNTER: AtomicU32 = AtomicU32::new(1);

fn name(tag: &str) -> String {
    format!("lf{}{tag}{}", addr::slice(SALT), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Version `i` of the watched file: `v<i> n<k> ...` on each of its `k` lines, `k`
/// from 1 to 600 (up to ~70 KiB), so sizes grow and shrink between versions.
fn version(i: u32) -> String {
    let k = 1 + (i * 7919) % 600;
    format!("v{i} n{k} {}\n", "x".repeat(100)).repeat(k as usize)
}

/// `s` as a TOML basic string.
fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
}

/// A reader that reads the file over and over: each read is one line in the volume's
/// `reads`, `ok` or `torn <lines> <first line>` (empty, lines differing, or fewer
/// lines than the first names).
const READER: &str = r#"while :; do /usr/bin/mawk 'NR==1{f=$0; split($2,a,"n"); n=a[2]+0} $0!=f{bad=1} END{if (NR==0 || bad || NR!=n) print "torn " NR " " f; else print "ok"}' /srv/conf/data.txt >> /srv/out/reads; done"#;

fn torn_spec(content: &str) -> String {
    format!(
        r#"base = "host"
[network]
mode = "none"
[[files]]
path = "/srv/conf/data.txt"
content = {}
[[mounts]]
target = "/srv/out"
type = "volume"
[processes.reader]
command = ["/bin/sh", "-c", {}]
"#,
        toml_str(content),
        toml_str(READER)
    )
}

#[test]
fn a_reader_inside_never_sees_a_torn_file_during_200_rewrites() {
    require_host!();
    let ct = Ct::new(&name("t"), &torn_spec(&version(0)));
    ct.apply_ok();
    let pid1 = ct.pid1();
    let reads = ct.volume("srv-out").join("reads");
    eventually("the reader's first read", 30, || std::fs::metadata(&reads).ok().filter(|m| m.len() > 0));
    for i in 1..=200 {
        ct.write(&torn_spec(&version(i)));
        let out = ct.apply_ok();
        assert!(!out.contains("recreated"), "rewrite {i} recreated the container: {out}");
    }
    assert_eq!(ct.pid1(), pid1, "a rewrite recreated the container");
    assert_eq!(ct.exec_ok(&["/bin/cat", "/srv/conf/data.txt"]), version(200));
    // Let the reader read the last version a few times too.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let log = std::fs::read_to_string(&reads).unwrap();
    let total = log.lines().count();
    let torn: Vec<&str> = log.lines().filter(|l| *l != "ok").collect();
    assert!(total > 200, "the reader read only {total} times");
    assert!(torn.is_empty(), "{} of {total} reads saw a torn file, e.g. {:?}", torn.len(), &torn[..torn.len().min(5)]);
    // The swaps do not pile up mounts at the file's path.
    let mounts = ct.exec_ok(&["/bin/cat", "/proc/self/mountinfo"]);
    let at = mounts.lines().filter(|l| l.split_whitespace().nth(4) == Some("/srv/conf/data.txt")).count();
    assert!((1..=2).contains(&at), "{at} mounts at the file after 200 swaps:\n{mounts}");
}

fn small_spec(content: &str) -> String {
    format!(
        r#"base = "host"
[network]
mode = "none"
[[files]]
path = "/srv/conf/big.txt"
content = {}
[processes.main]
command = ["/bin/sleep", "infinity"]
"#,
        toml_str(content)
    )
}

/// A tmpfs of `size` on `dir`, unmounted (lazily) when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        host_ok(&["mount", "-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs", dir.to_str().unwrap()]);
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = host(&["umount", "-l", self.0.to_str().unwrap()]);
    }
}

#[test]
fn a_write_that_fails_for_space_keeps_the_old_content() {
    require_host!();
    let n = name("s");
    let dirs = root().join("containers").join(&n);
    // The container's `files/` on a small file system of its own: the plan and state
    // files still fit (they are elsewhere), the rendered files do not.
    let old = "a line of the old content\n".repeat(300);
    let ct = Ct::new(&n, &small_spec(&old));
    // Unmounted before `ct` destroys the container (drop order).
    let fs = Tmpfs::mount(&dirs.join("files"), "96k");
    ct.apply_ok();
    assert_eq!(ct.exec_ok(&["/bin/cat", "/srv/conf/big.txt"]), old);
    // Fill what is left.
    let _ = host(&["dd", "if=/dev/zero", &format!("of={}/.filler", fs.0.display()), "bs=4k"]);
    let new = "the new content, longer than the room left\n".repeat(1500);
    ct.write(&small_spec(&new));
    let out = ct.apply();
    assert!(!out.status.success(), "apply wrote a file into a full file system");
    assert!(text(&out.stderr).contains("big.txt"), "the error does not name the file: {}", text(&out.stderr));
    assert_eq!(ct.exec_ok(&["/bin/cat", "/srv/conf/big.txt"]), old, "the container sees a torn file");
    assert_eq!(std::fs::read_to_string(fs.0.join("srv/conf/big.txt")).unwrap(), old, "the host file is torn");
    let left: Vec<_> = std::fs::read_dir(fs.0.join("srv/conf")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(!left.iter().any(|n| n.to_string_lossy().ends_with(".tmp")), "a temp file was left: {left:?}");
    // Room again: the next apply writes it.
    std::fs::remove_file(fs.0.join(".filler")).unwrap();
    ct.apply_ok();
    assert_eq!(ct.exec_ok(&["/bin/cat", "/srv/conf/big.txt"]), new);
}

fn add_spec(extra: &str) -> String {
    format!(
        r#"base = "host"
[network]
mode = "none"
[[files]]
path = "/srv/data/kept.conf"
content = "kept"
[[mounts]]
target = "/srv/data"
type = "volume"
[[mounts]]
target = "/srv/scratch"
type = "tmpfs"
size = "1M"
[processes.a]
command = ["/bin/sleep", "infinity"]
[processes.b]
command = ["/bin/sleep", "infinity"]
{extra}"#
    )
}

const ADDED: &str = r#"
[[files]]
path = "/srv/data/sub/new.conf"
content = "new in a volume"
[[files]]
path = "/srv/scratch/new.conf"
content = "new in a tmpfs"
"#;

#[test]
fn a_new_file_beneath_a_volume_or_tmpfs_is_added_live() {
    require_host!();
    let ct = Ct::new(&name("a"), &add_spec(""));
    ct.apply_ok();
    let pids = || (ct.pid1(), ct.service_pid("a"), ct.service_pid("b"));
    let before = pids();

    ct.write(&add_spec(ADDED));
    let plan = container().arg("plan").arg(ct.spec()).stdin(Stdio::null()).output().unwrap();
    let shown = text(&plan.stdout);
    assert_eq!(plan.status.code(), Some(2), "{shown}");
    assert!(shown.contains("+ file      /srv/data/sub/new.conf"), "{shown}");
    assert!(!shown.contains("recreate"), "a new file beneath a volume recreates: {shown}");
    assert!(shown.contains("Plan: 2 to add, 0 to change, 0 to destroy."), "{shown}");
    let out = ct.apply_ok();
    assert!(!out.contains("recreated"), "{out}");
    assert_eq!(pids(), before, "adding files restarted PID 1 or a service");
    assert_eq!(ct.exec_ok(&["/bin/cat", "/srv/data/sub/new.conf"]), "new in a volume");
    assert_eq!(ct.exec_ok(&["/bin/cat", "/srv/scratch/new.conf"]), "new in a tmpfs");
    // Read-only inside, like every rendered file.
    let w = ct.exec(&["/bin/sh", "-c", "echo x > /srv/data/sub/new.conf"]);
    assert!(!w.status.success(), "a rendered file added live is writable inside");

    // And it changes live like the others (its mount is ours: swapped beneath).
    ct.write(&add_spec(&ADDED.replace("new in a volume", "changed")));
    ct.apply_ok();
    assert_eq!(pids(), before);
    assert_eq!(ct.exec_ok(&["/bin/cat", "/srv/data/sub/new.conf"]), "changed");

    // A restart binds it the usual way.
    ok(&["restart", &ct.name]);
    assert_eq!(ct.exec_ok(&["/bin/cat", "/srv/data/sub/new.conf"]), "changed");
}

#[test]
fn a_new_file_in_the_read_only_root_still_recreates() {
    require_host!();
    let ct = Ct::new(&name("r"), &add_spec(""));
    ct.apply_ok();
    let pid1 = ct.pid1();
    ct.write(&add_spec("[[files]]\npath = \"/srv/elsewhere.conf\"\ncontent = \"x\"\n"));
    let plan = container().arg("plan").arg(ct.spec()).stdin(Stdio::null()).output().unwrap();
    assert!(text(&plan.stdout).contains("recreate container"), "{}", text(&plan.stdout));
    ct.apply_ok();
    assert_ne!(ct.pid1(), pid1);
    assert_eq!(ct.exec_ok(&["/bin/cat", "/srv/elsewhere.conf"]), "x");
}
