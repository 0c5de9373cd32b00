//! Escape attempts through the kernel's system-call surface, done for real from inside
//! a container (as its root through `container exec`, as `nobody` through `setpriv`
//! inside, and as an unprivileged service), through the real CLI and `base = "host"`:
//! the Shocker attack (`open_by_handle_at` with a handle forged for a host folder,
//! through a volume and the `/run/container` bind), new proc and sysfs mounts,
//! unmounting a masked path, remounting `/proc/sys` and writing `core_pattern`, reading
//! the host root's kernel keyring, reading the kernel log, making a user + network
//! namespace, loading a kernel module, ptrace of PID 1. Each must fail (with the
//! seccomp filter's EPERM where the filter is what stops it), and the host must be
//! unchanged.
//!
//! Harmless by construction: the probes are Python (ctypes) one-shots; the module
//! probe passes an empty image (refused before anything is read); the `core_pattern`
//! write writes the value it read; mounts happen only in the container's own mount
//! namespace; the ptrace probe uses PTRACE_SEIZE, which does not stop PID 1. No
//! network: every container has `mode = "none"` (address salt 45 is reserved for this
//! file should it ever need addresses).

mod support;

use support::*;

/// Python prelude: `sc(nr, *args)` returns (result, errno); `say(name, r, e)` prints
/// "name: ok" or "name: errno N".
const PRELUDE: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sc(nr, *args):
    ctypes.set_errno(0)
    a = [ctypes.c_long(x) if isinstance(x, int) else x for x in args]
    r = libc.syscall(ctypes.c_long(nr), *a)
    return r, ctypes.get_errno()
def say(name, r, e):
    print(f"{name}: {'ok' if r >= 0 else 'errno ' + str(e)}", flush=True)
"#;

const PYTHON: &str = "/usr/bin/python3";

fn script(body: &str) -> String {
    format!("{PRELUDE}\n{body}\nprint('DONE', flush=True)\n")
}

/// Run a probe in the container as its root.
fn as_root(ct: &Ct, body: &str) -> String {
    let code = script(body);
    let out = ct.exec(&[PYTHON, "-c", &code]);
    let s = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(s.contains("DONE"), "root probe did not finish:\n{s}");
    s
}

/// Run a probe in the container as `nobody` (uid and gid 65534, no groups).
fn as_nobody(ct: &Ct, body: &str) -> String {
    let code = script(body);
    let argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", PYTHON, "-c", &code];
    let out = ct.exec(&argv);
    let s = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(s.contains("DONE"), "nobody probe did not finish:\n{s}");
    s
}

#[track_caller]
fn refused(out: &str, name: &str) {
    assert!(out.contains(&format!("{name}: errno 1\n")), "{name} was not refused with EPERM:\n{out}");
}

fn ct(name: &str, extra: &str) -> Ct {
    let c = Ct::new(name, &format!("base = \"host\"\n[network]\nmode = \"none\"\n{extra}"));
    c.apply_ok();
    c
}

/// The handle `name_to_handle_at` gives for a host path, as hex of `struct file_handle`.
fn host_handle(path: &std::path::Path) -> String {
    let code = r#"
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(8 + 128)
ctypes.memmove(buf, (128).to_bytes(4, 'little'), 4)
mid = ctypes.c_int()
r = libc.name_to_handle_at(-100, sys.argv[1].encode(), buf, ctypes.byref(mid), 0)
assert r == 0, ctypes.get_errno()
n = int.from_bytes(buf.raw[0:4], 'little')
print(buf.raw[:8 + n].hex())
"#;
    host_ok(&[PYTHON, "-c", code, &path.to_string_lossy()]).trim().to_string()
}

#[test]
fn shocker_open_by_handle_at_through_a_bind_fails() {
    require_host!();
    let c = ct("esc-s-shocker", "[[mounts]]\ntarget = \"/data\"\ntype = \"volume\"\n");
    // A host folder outside everything the container may see, with a file in it.
    let secret = tempfile::tempdir_in(support::root()).expect("tempdir");
    std::fs::write(secret.path().join("esc-s-host-secret"), "host only").unwrap();
    let handle = host_handle(secret.path());
    let body = format!(
        r#"
h = bytes.fromhex("{handle}")
buf = ctypes.create_string_buffer(h, len(h))
for m in ["/data", "/run/container"]:
    fd = os.open(m, os.O_RDONLY | os.O_DIRECTORY)
    r, e = sc(304, fd, buf, os.O_RDONLY | os.O_DIRECTORY)
    if r >= 0:
        print(m, "OPENED", os.listdir(f"/proc/self/fd/{{r}}"))
    say("open_by_handle_at " + m, r, e)
"#
    );
    for out in [as_root(&c, &body), as_nobody(&c, &body)] {
        assert!(!out.contains("esc-s-host-secret"), "the host folder was opened:\n{out}");
        refused(&out, "open_by_handle_at /data");
        refused(&out, "open_by_handle_at /run/container");
    }
    let names: Vec<_> = std::fs::read_dir(secret.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["esc-s-host-secret"], "the host folder changed");
}

#[test]
fn new_proc_and_sysfs_mounts_and_umount_of_masks_fail() {
    require_host!();
    let c = ct("esc-s-mount", "");
    // runc's masks that exist on this kernel.
    let masks: Vec<&str> = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/sys/firmware"]
        .into_iter()
        .filter(|p| std::path::Path::new(p).exists())
        .collect();
    assert!(!masks.is_empty());
    let body = format!(
        r#"
for d in ["/tmp/p", "/tmp/s"]:
    os.makedirs(d, exist_ok=True)
r = libc.mount(b"proc", b"/tmp/p", b"proc", 0, None); say("mount proc", r, ctypes.get_errno())
r = libc.mount(b"sysfs", b"/tmp/s", b"sysfs", 0, None); say("mount sysfs", r, ctypes.get_errno())
for p in {masks:?}:
    r, e = sc(166, p.encode(), 2)  # umount2(p, MNT_DETACH)
    say("umount " + p, r, e)
"#
    );
    for out in [as_root(&c, &body), as_nobody(&c, &body)] {
        refused(&out, "mount proc");
        refused(&out, "mount sysfs");
        for m in &masks {
            refused(&out, &format!("umount {m}"));
        }
    }
    // The masks are still in place: each file reads empty, each folder is empty.
    for m in &masks {
        let out = c.exec_ok(&["sh", "-c", &format!("if [ -d {m} ]; then ls -A {m}; else cat {m}; fi | wc -c")]);
        assert_eq!(out.trim(), "0", "{m} is not masked any more");
    }
}

#[test]
fn proc_sys_cannot_be_remounted_or_written() {
    require_host!();
    let before = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let c = ct("esc-s-procsys", "");
    // Remount read-write, then write back the value just read (harmless if it worked).
    let body = r#"
r = libc.mount(None, b"/proc/sys", None, 0x20 | 0x1000, None)  # MS_REMOUNT | MS_BIND
say("remount /proc/sys", r, ctypes.get_errno())
cur = open("/proc/sys/kernel/core_pattern").read()
try:
    with open("/proc/sys/kernel/core_pattern", "w") as f:
        f.write(cur)
    print("write core_pattern: ok")
except OSError as e:
    print(f"write core_pattern: errno {e.errno}")
"#;
    for out in [as_root(&c, body), as_nobody(&c, body)] {
        refused(&out, "remount /proc/sys");
        assert!(out.contains("write core_pattern: errno"), "core_pattern was written:\n{out}");
    }
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(), before);
}

/// A key in host root's session and user keyrings; unlinked on drop.
struct HostKey {
    serial: i64,
}

impl HostKey {
    fn add(desc: &str, payload: &str) -> HostKey {
        let code = r#"
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
p = sys.argv[2].encode()
s = libc.syscall(ctypes.c_long(248), b"user", sys.argv[1].encode(), p, ctypes.c_long(len(p)), ctypes.c_long(-3))
assert s > 0, ctypes.get_errno()
# Linked into the user keyring too (KEYCTL_LINK).
assert libc.syscall(ctypes.c_long(250), ctypes.c_long(8), ctypes.c_long(s), ctypes.c_long(-4)) == 0
print(s)
"#;
        let serial = host_ok(&[PYTHON, "-c", code, desc, payload]).trim().parse().expect("serial");
        HostKey { serial }
    }
}

impl Drop for HostKey {
    fn drop(&mut self) {
        // KEYCTL_INVALIDATE: gone from every keyring at once.
        let code = format!(
            "import ctypes; l = ctypes.CDLL(None); l.syscall(ctypes.c_long(250), ctypes.c_long(21), ctypes.c_long({}))",
            self.serial
        );
        let _ = host(&[PYTHON, "-c", &code]);
    }
}

const KEY_PROBE: &str = r#"
serial = int(sys.argv[1])
buf = ctypes.create_string_buffer(256)
r, e = sc(250, 11, serial, buf, 256)  # KEYCTL_READ
if r >= 0:
    print("READ", buf.raw[:r])
say("keyctl read", r, e)
r, e = sc(250, 0, -3, 0)  # KEYCTL_GET_KEYRING_ID of the session keyring
say("keyctl session", r, e)
r, e = sc(249, b"user", b"esc-s-key", None, 0)  # request_key
say("request_key", r, e)
"#;

#[test]
fn host_root_keyring_is_out_of_reach() {
    require_host!();
    let payload = format!("esc-s-payload-{}", std::process::id());
    let key = HostKey::add("esc-s-key", &payload);
    // Also as a service: PID 1's children, in the container's own session keyring.
    let svc_code = script(KEY_PROBE);
    let extra = format!(
        "[processes.keyprobe]\ncommand = [\"{PYTHON}\", \"-c\", {:?}, \"{}\"]\nrestart = \"no\"\n",
        svc_code, key.serial
    );
    let c = ct("esc-s-keys", &extra);
    let serial = key.serial.to_string();
    let code = script(KEY_PROBE);
    let root = String::from_utf8_lossy(&c.exec(&[PYTHON, "-c", &code, &serial]).stdout).into_owned();
    let argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", PYTHON, "-c", &code, &serial];
    let nobody = String::from_utf8_lossy(&c.exec(&argv).stdout).into_owned();
    let svc = eventually("the key probe service", 20, || {
        Some(ok(&["logs", &c.name, "keyprobe"])).filter(|l| l.contains("DONE"))
    });
    for out in [&root, &nobody, &svc] {
        assert!(out.contains("DONE"), "{out}");
        assert!(!out.contains(&payload), "host root's key was read:\n{out}");
        refused(out, "keyctl read");
        refused(out, "keyctl session");
        refused(out, "request_key");
    }
    // The key is still there on the host, unchanged.
    let check = format!(
        "import ctypes; l = ctypes.CDLL(None); l.syscall.restype = ctypes.c_long; b = ctypes.create_string_buffer(256); \
         n = l.syscall(ctypes.c_long(250), ctypes.c_long(11), ctypes.c_long({serial}), b, ctypes.c_long(256)); print(b.raw[:n].decode())"
    );
    assert_eq!(host_ok(&[PYTHON, "-c", &check]).trim(), payload);
    drop(key);
}

#[test]
fn kernel_log_is_out_of_reach() {
    require_host!();
    let c = ct("esc-s-dmesg", "");
    let body = r#"
buf = ctypes.create_string_buffer(4096)
r, e = sc(103, 3, buf, 4096)  # syslog(SYSLOG_ACTION_READ_ALL)
say("syslog", r, e)
r, e = sc(103, 10, None, 0)  # SYSLOG_ACTION_SIZE_BUFFER
say("syslog size", r, e)
try:
    os.open("/dev/kmsg", os.O_RDONLY)
    print("kmsg: ok")
except OSError as e:
    print(f"kmsg: errno {e.errno}")
"#;
    for out in [as_root(&c, body), as_nobody(&c, body)] {
        refused(&out, "syslog");
        refused(&out, "syslog size");
        assert!(out.contains("kmsg: errno"), "/dev/kmsg opened:\n{out}");
    }
    let dmesg = c.exec(&["dmesg"]);
    assert!(!dmesg.status.success(), "dmesg worked: {}", text(&dmesg.stdout));
    assert!(dmesg.stdout.is_empty(), "dmesg printed the kernel log");
}

#[test]
fn an_unprivileged_service_cannot_make_user_and_network_namespaces() {
    require_host!();
    let body = r#"
r, e = sc(272, 0x10000000 | 0x40000000)  # unshare(CLONE_NEWUSER | CLONE_NEWNET)
say("unshare", r, e)
r, e = sc(56, 0x10000000 | 0x40000000 | 17, 0, 0, 0, 0)  # clone(NEWUSER | NEWNET | SIGCHLD)
if r == 0:
    os._exit(0)
say("clone", r, e)
"#;
    let code = script(body);
    let extra = format!(
        "[processes.nsprobe]\ncommand = [\"{PYTHON}\", \"-c\", {code:?}]\nuser = \"nobody\"\nrestart = \"no\"\n"
    );
    let c = ct("esc-s-userns", &extra);
    let svc = eventually("the namespace probe service", 20, || {
        Some(ok(&["logs", &c.name, "nsprobe"])).filter(|l| l.contains("DONE"))
    });
    refused(&svc, "unshare");
    refused(&svc, "clone");
    // The same with the tool, as the container's root and as nobody.
    let root = c.exec(&["unshare", "-Urn", "true"]);
    assert!(!root.status.success(), "unshare -Urn worked as the container's root");
    let nobody = c.exec(&["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "unshare", "-Urn", "true"]);
    assert!(!nobody.status.success(), "unshare -Urn worked as nobody");
    assert!(text(&nobody.stderr).contains("Operation not permitted"), "{}", text(&nobody.stderr));
}

#[test]
fn kernel_modules_cannot_be_loaded() {
    require_host!();
    let c = ct("esc-s-module", "");
    // An empty image: refused on permission before the kernel reads anything.
    let body = r#"
r, e = sc(175, None, 0, b"")  # init_module(NULL, 0, "")
say("init_module", r, e)
r, e = sc(313, -1, b"", 0)  # finit_module(-1, "", 0)
say("finit_module", r, e)
r, e = sc(176, b"esc_s_none", 0x800)  # delete_module(…, O_NONBLOCK)
say("delete_module", r, e)
"#;
    for out in [as_root(&c, body), as_nobody(&c, body)] {
        refused(&out, "init_module");
        refused(&out, "finit_module");
        refused(&out, "delete_module");
    }
}

#[test]
fn pid1_cannot_be_traced() {
    require_host!();
    let c = ct("esc-s-ptrace", "");
    // PTRACE_SEIZE does not stop the tracee; the probe's exit detaches.
    let body = r#"
r, e = sc(101, 0x4206, 1, 0, 0)  # ptrace(PTRACE_SEIZE, 1)
say("ptrace", r, e)
local = ctypes.create_string_buffer(8)
iov_l = (ctypes.c_void_p * 2)(ctypes.cast(local, ctypes.c_void_p), 8)
iov_r = (ctypes.c_void_p * 2)(0x400000, 8)
r, e = sc(310, 1, iov_l, 1, iov_r, 1, 0)  # process_vm_readv(1, …)
say("process_vm_readv", r, e)
"#;
    for out in [as_root(&c, body), as_nobody(&c, body)] {
        refused(&out, "ptrace");
        refused(&out, "process_vm_readv");
    }
    let st = c.exec_ok(&["grep", "TracerPid", "/proc/1/status"]);
    assert!(st.contains("TracerPid:\t0"), "{st}");
}

/// PID 1's filter allows clone3 (it starts services born in their cgroups); no other
/// process's does, and PID 1 is non-dumpable, so not even a root service whose filter
/// allows ptrace can seize it or open its memory to make it clone3 for them.
#[test]
fn pid1_clone3_is_out_of_reach() {
    require_host!();
    let body = r#"
args = ctypes.create_string_buffer(88)
r, e = sc(435, args, 88)  # clone3(zeroed args): fork-like, but ENOSYS expected
if r == 0:
    os._exit(0)
say("clone3", r, e)
r, e = sc(101, 0x4206, 1, 0, 0)  # ptrace(PTRACE_SEIZE, 1)
say("ptrace", r, e)
try:
    open("/proc/1/mem", "rb").close()
    print("mem: ok", flush=True)
except OSError as x:
    print(f"mem: errno {x.errno}", flush=True)
"#;
    let code = script(body);
    let extra = format!(
        "[processes.tracer]\ncommand = [\"{PYTHON}\", \"-c\", {code:?}]\nrestart = \"no\"\n\
         [processes.tracer.security]\nseccomp_allow = [\"ptrace\"]\n"
    );
    let c = ct("esc-s-clone3", &extra);
    let svc =
        eventually("the tracer service", 20, || Some(ok(&["logs", &c.name, "tracer"])).filter(|l| l.contains("DONE")));
    assert!(svc.contains("clone3: errno 38\n"), "a root service could clone3:\n{svc}");
    refused(&svc, "ptrace");
    assert!(svc.contains("mem: errno 13\n") || svc.contains("mem: errno 1\n"), "/proc/1/mem opened:\n{svc}");
    for out in [as_root(&c, body), as_nobody(&c, body)] {
        assert!(out.contains("clone3: errno 38\n"), "clone3 was not ENOSYS:\n{out}");
        assert!(!out.contains("mem: ok"), "/proc/1/mem opened:\n{out}");
    }
    let st = c.exec_ok(&["grep", "TracerPid", "/proc/1/status"]);
    assert!(st.contains("TracerPid:\t0"), "{st}");
}

#[test]
fn processes_get_the_default_capabilities_no_new_privs_and_the_filter() {
    require_host!();
    let show =
        "[\"grep\", \"-E\", \"^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):\", \"/proc/self/status\"]";
    let extra = format!(
        "[processes.asroot]\ncommand = {show}\nrestart = \"no\"\n\
         [processes.asnobody]\ncommand = {show}\nuser = \"nobody\"\nrestart = \"no\"\n\
         [processes.relaxed]\ncommand = {show}\nrestart = \"no\"\n\
         [processes.relaxed.security]\ncap_add = [\"NET_RAW\"]\ncap_drop = [\"CHOWN\"]\nseccomp_allow = [\"ptrace\"]\nno_new_privs = false\n"
    );
    let c = Ct::new("esc-s-caps", &format!("base = \"host\"\n[network]\nmode = \"none\"\n{extra}"));
    // plan says what differs from the defaults.
    let plan = String::from_utf8_lossy(&run(&["plan", &c.spec().to_string_lossy()]).stdout).into_owned();
    assert!(
        plan.contains("relaxed: grep")
            && plan.contains("capabilities +NET_RAW -CHOWN; seccomp allows ptrace; no_new_privs off"),
        "{plan}"
    );
    assert!(
        !plan.contains("asroot: grep -E ^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp): /proc/self/status ("),
        "{plan}"
    );
    c.apply_ok();
    let log = |svc: &str| eventually(svc, 20, || Some(ok(&["logs", &c.name, svc])).filter(|l| l.contains("Seccomp:")));
    // The eleven: bits 0 1 3 4 5 6 7 8 10 18 31.
    let root = log("asroot");
    for line in [
        "CapPrm:\t00000000800405fb",
        "CapEff:\t00000000800405fb",
        "CapBnd:\t00000000800405fb",
        "CapInh:\t0000000000000000",
        "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
    ] {
        assert!(root.contains(line), "root service: {line} missing:\n{root}");
    }
    let nobody = log("asnobody");
    for line in [
        "CapPrm:\t0000000000000000",
        "CapEff:\t0000000000000000",
        "CapBnd:\t00000000800405fb",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
    ] {
        assert!(nobody.contains(line), "nobody service: {line} missing:\n{nobody}");
    }
    // +NET_RAW (13), -CHOWN (0): 0x800425fa.
    let relaxed = log("relaxed");
    for line in ["CapEff:\t00000000800425fa", "CapBnd:\t00000000800425fa", "NoNewPrivs:\t0", "Seccomp:\t2"] {
        assert!(relaxed.contains(line), "relaxed service: {line} missing:\n{relaxed}");
    }
    // status shows it too, in text and JSON.
    let st = ok(&["status", &c.name]);
    assert!(
        st.contains("service relaxed: capabilities +NET_RAW -CHOWN; seccomp allows ptrace; no_new_privs off"),
        "{st}"
    );
    assert!(st.contains("PID 1 keeps also NET_RAW SYS_ADMIN"), "{st}");
    let js = c.status();
    assert_eq!(js["security"]["services"]["relaxed"]["seccomp_allow"][0], "ptrace", "{js}");
    assert_eq!(js["security"]["services"]["relaxed"]["no_new_privs"], false, "{js}");
    assert!(js["security"]["services"].get("asroot").is_none(), "{js}");
    // exec gets the container's set.
    let ex = c.exec_ok(&["grep", "-E", "^(CapBnd|NoNewPrivs|Seccomp):", "/proc/self/status"]);
    assert!(
        ex.contains("CapBnd:\t00000000800405fb") && ex.contains("NoNewPrivs:\t1") && ex.contains("Seccomp:\t2"),
        "{ex}"
    );
}
