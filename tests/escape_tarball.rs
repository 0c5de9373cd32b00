//! Hostile tarballs of a build's `fetch` step, unpacked for real (host tier: as root,
//! the real `container __unpack` the build runs, on a temp folder that plays the
//! layer, with a "host" folder beside it that plays the host).
//!
//! Each tarball tries one way out: a symlink it plants and then writes through, a
//! symlink already in the layer, `../` and absolute names, device nodes and a FIFO,
//! setuid/setgid files and a sticky folder, a hard link to a host file. After each:
//! no file appeared in the host folder (nor was a host file linked), nothing in the
//! layer is setuid, setgid, a device node or a FIFO, and a refusal names the member.
//!
//! No network, so this file uses no addresses.

mod support;

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The layer and the host folder of one test, removed when dropped.
struct Stage {
    top: PathBuf,
    layer: PathBuf,
    host: PathBuf,
}

impl Stage {
    fn new(tag: &str) -> Stage {
        let top = std::env::temp_dir().join(format!("ct-untar-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&top);
        let (layer, host) = (top.join("layer"), top.join("host"));
        std::fs::create_dir_all(layer.join("var/www")).unwrap();
        std::fs::create_dir_all(&host).unwrap();
        std::fs::write(host.join("secret"), "host-secret\n").unwrap();
        Stage { top, layer, host }
    }

    /// `container __unpack LAYER DEST STRIP < tarball`.
    fn unpack(&self, dest: &str, strip: u32, tarball: &[u8]) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_container"))
            .arg("__unpack")
            .arg(&self.layer)
            .arg(dest)
            .arg(strip.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A refusal may come before the whole tarball is read.
        let _ = child.stdin.take().unwrap().write_all(tarball);
        child.wait_with_output().unwrap()
    }

    /// The host folder holds only its secret, unchanged and not linked from anywhere.
    fn host_untouched(&self) {
        let names: Vec<_> = std::fs::read_dir(&self.host).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("secret")], "a file appeared on the host");
        let m = std::fs::metadata(self.host.join("secret")).unwrap();
        assert_eq!(m.nlink(), 1, "the host's secret was hard-linked");
        assert_eq!(std::fs::read_to_string(self.host.join("secret")).unwrap(), "host-secret\n");
        let beside: Vec<_> = std::fs::read_dir(&self.top).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(beside.len(), 2, "a file appeared beside the layer: {beside:?}");
    }

    /// Nothing in the layer is setuid, setgid, a device node or a FIFO, and nothing
    /// is another name of the host's secret.
    fn layer_clean(&self) {
        fn walk(dir: &Path, bad: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                let m = std::fs::symlink_metadata(&p).unwrap();
                let t = m.file_type();
                if t.is_char_device() || t.is_block_device() || t.is_fifo() || t.is_socket() {
                    bad.push(format!("{} is a special file", p.display()));
                }
                if !t.is_symlink() && m.permissions().mode() & 0o6000 != 0 {
                    bad.push(format!("{} is setuid/setgid ({:o})", p.display(), m.permissions().mode()));
                }
                if t.is_dir() {
                    walk(&p, bad);
                }
            }
        }
        let mut bad = Vec::new();
        walk(&self.layer, &mut bad);
        assert!(bad.is_empty(), "{bad:#?}");
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.top);
    }
}

/// One member with its header written raw, so names and kinds go in as given (the
/// `tar` crate's builder refuses `..` and absolute names).
fn member(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, link: &str, mode: u32, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    let raw = h.as_mut_bytes();
    raw[..name.len()].copy_from_slice(name.as_bytes());
    raw[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(1000);
    h.set_gid(1000);
    h.set_size(data.len() as u64);
    if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
        // /dev/null's and /dev/loop0's numbers: nothing is ever opened.
        let (maj, min) = if kind == tar::EntryType::Char { (1, 3) } else { (7, 0) };
        h.set_device_major(maj).unwrap();
        h.set_device_minor(min).unwrap();
    }
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn tarball(members: &[(&str, tar::EntryType, &str, u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, mode, data) in members {
        member(&mut out, name, *kind, link, *mode, data);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(bytes).unwrap();
    z.finish().unwrap()
}

#[track_caller]
fn refused(out: &Output, member: &str, why: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the unpack succeeded: {err}");
    assert!(err.contains(&format!("member `{member}`")) && err.contains(why), "{member}: {err}");
}

use tar::EntryType as T;

#[test]
fn a_symlink_the_tarball_plants_is_never_followed_onto_the_host() {
    require_host!();
    let s = Stage::new("plant");
    let host = s.host.to_str().unwrap();
    // (a) `evil -> <host folder>`, then `evil/pwned`: host tar wrote the host's folder.
    let t = tarball(&[("evil", T::Symlink, host, 0o777, b""), ("evil/pwned", T::Regular, "", 0o644, b"pwned\n")]);
    refused(&s.unpack("/var/www", 0, &gzip(&t)), "evil/pwned", "missing folder");
    s.host_untouched();
    // With the target's folder in the layer, the file lands there, as in a chroot.
    std::fs::create_dir_all(s.layer.join(host.trim_start_matches('/'))).unwrap();
    let out = s.unpack("/var/www", 0, &t);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(s.layer.join(host.trim_start_matches('/')).join("pwned").is_file());
    // Climbing out of the layer with a relative target stops at the layer's root.
    let t =
        tarball(&[("up", T::Symlink, "../../../../../..", 0o777, b""), ("up/climbed", T::Regular, "", 0o644, b"x")]);
    let out = s.unpack("/var/www", 0, &t);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(s.layer.join("climbed").is_file() && !s.top.join("climbed").exists() && !Path::new("/climbed").exists());
    s.host_untouched();
    s.layer_clean();
}

#[test]
fn a_symlink_already_in_the_layer_resolves_inside_it() {
    require_host!();
    let s = Stage::new("layerlink");
    // (b) The layer has `etc2 -> <host folder>` (absolute): in-root, that is the
    // layer's own folder of that name; the host's is never reached.
    std::os::unix::fs::symlink(&s.host, s.layer.join("etc2")).unwrap();
    let t = tarball(&[("etc2/x", T::Regular, "", 0o644, b"x")]);
    refused(&s.unpack("/", 0, &t), "etc2/x", "missing folder");
    s.host_untouched();
    // And as the destination itself.
    let out = s.unpack("/etc2/sub", 0, &t);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing folder"));
    s.host_untouched();
    let inside = s.layer.join(s.host.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&inside).unwrap();
    let out = s.unpack("/", 0, &t);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(inside.join("x").is_file());
    s.host_untouched();
}

#[test]
fn names_that_leave_the_destination_are_refused() {
    require_host!();
    let s = Stage::new("names");
    // (c) `../../x` from /var/www is the layer's root, `../../../host/...` the host.
    let up = "../../../host/dotdot";
    for (name, why) in [("../../x", "`..`"), (up, "`..`"), ("ok/../../../../host/y", "`..`")] {
        let t = tarball(&[("fine", T::Regular, "", 0o644, b"ok"), (name, T::Regular, "", 0o644, b"x")]);
        refused(&s.unpack("/var/www", 0, &t), name, why);
    }
    let abs = format!("{}/abs", s.host.display());
    for name in ["/abs/x", abs.as_str()] {
        let t = tarball(&[(name, T::Regular, "", 0o644, b"x")]);
        refused(&s.unpack("/var/www", 1, &t), name, "absolute");
    }
    assert!(!s.layer.join("x").exists() && !s.layer.join("abs").exists());
    s.host_untouched();
}

#[test]
fn device_nodes_and_fifos_are_refused() {
    require_host!();
    let s = Stage::new("dev");
    // (d) A char device, a block device, a FIFO: host tar made them as root.
    for (name, kind, why) in
        [("null", T::Char, "device node"), ("loop", T::Block, "device node"), ("fifo", T::Fifo, "FIFO")]
    {
        let t = tarball(&[(name, kind, "", 0o666, b"")]);
        refused(&s.unpack("/var/www", 0, &t), name, why);
    }
    s.layer_clean();
    s.host_untouched();
}

#[test]
fn setuid_setgid_and_sticky_bits_are_cleared_and_owners_are_root() {
    require_host!();
    let s = Stage::new("suid");
    // (e) A setuid-root shell stand-in, a setgid file and a sticky folder, owned by
    // uid 1000 in the tarball.
    let t = tarball(&[
        ("app/", T::Directory, "", 0o3777, b""),
        ("app/rootshell", T::Regular, "", 0o4755, b"#!/bin/sh\n"),
        ("app/sgid", T::Regular, "", 0o2755, b"#!/bin/sh\n"),
    ]);
    let out = s.unpack("/var/www", 0, &t);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let w = s.layer.join("var/www/app");
    let m = |p: &Path| std::fs::symlink_metadata(p).unwrap();
    assert_eq!(m(&w).permissions().mode() & 0o7777, 0o777, "the sticky and setgid bits stay off the folder");
    assert_eq!(m(&w.join("rootshell")).permissions().mode() & 0o7777, 0o755);
    assert_eq!(m(&w.join("sgid")).permissions().mode() & 0o7777, 0o755);
    for p in [w.clone(), w.join("rootshell"), w.join("sgid")] {
        assert_eq!((m(&p).uid(), m(&p).gid()), (0, 0), "{} is root's", p.display());
    }
    s.layer_clean();
    s.host_untouched();
}

#[test]
fn hard_links_reach_only_what_the_tarball_unpacked() {
    require_host!();
    let s = Stage::new("hard");
    let host = s.host.to_str().unwrap();
    // (f) A hard link to a host file: by absolute name, by `..`, and through a
    // symlink the tarball planted (host tar linked the host's file into the layer).
    let secret = format!("{host}/secret");
    let t = tarball(&[("stolen", T::Link, &secret, 0o644, b"")]);
    refused(&s.unpack("/", 0, &t), "stolen", "absolute");
    let t = tarball(&[("stolen", T::Link, "../host/secret", 0o644, b"")]);
    refused(&s.unpack("/", 0, &t), "stolen", "`..`");
    let t = tarball(&[("h", T::Symlink, host, 0o777, b""), ("stolen", T::Link, "h/secret", 0o644, b"")]);
    refused(&s.unpack("/", 0, &t), "stolen", "not a file this tarball unpacked");
    // Nor a file of the layer that this tarball did not make.
    std::fs::write(s.layer.join("shadow"), "layer's own\n").unwrap();
    let t = tarball(&[("var/www/shadow", T::Link, "shadow", 0o644, b"")]);
    refused(&s.unpack("/", 0, &t), "var/www/shadow", "not a file this tarball unpacked");
    // One to a member it did unpack is made.
    let t = tarball(&[("a", T::Regular, "", 0o644, b"a"), ("b", T::Link, "a", 0o644, b"")]);
    let out = s.unpack("/var/www", 0, &t);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::metadata(s.layer.join("var/www/b")).unwrap().nlink(), 2);
    s.host_untouched();
    s.layer_clean();
}
