//! A container NAME on the command line is a name, never a path (unit tier: a temp
//! state root owned by whoever runs the tests; no root needed, nothing outside the
//! temp folders is touched).
//!
//! Each test is an attack: a name that, joined onto `<root>/containers/`, would reach
//! outside the container's folder (`..`, `../x`, an absolute path, `.`, empty) or is
//! no name at all (odd bytes). Every command that takes a NAME must refuse it as a
//! usage error (exit 64) naming the argument and what a name may hold, and change
//! nothing: the victim folders and their files stay, and no `.lock` appears.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EX_USAGE: i32 = 64;

/// A temp state root with a container folder, a folder beside `containers/` and a
/// victim folder outside the root, each holding a file.
struct Scene {
    tmp: tempfile::TempDir,
}

impl Scene {
    fn new() -> Scene {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = Scene { tmp };
        for d in [s.root().join("containers/web/volumes/data"), s.root().join("x"), s.victim()] {
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("keep"), "keep").unwrap();
        }
        std::fs::write(s.root().join("keep"), "keep").unwrap();
        s
    }
    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }
    fn victim(&self) -> PathBuf {
        self.tmp.path().join("victim")
    }
    /// Every file the scene planted, which must survive any refused command.
    fn planted(&self) -> Vec<PathBuf> {
        vec![
            self.root().join("keep"),
            self.root().join("x/keep"),
            self.root().join("containers/web/volumes/data/keep"),
            self.victim().join("keep"),
        ]
    }
    fn run(&self, args: &[&OsStr]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_container"))
            .arg("--root")
            .arg(self.root())
            .arg("--cache")
            .arg(self.tmp.path().join("cache"))
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .expect("run container")
    }
}

/// Every `.lock` file under `dir`.
fn locks(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(locks(&p));
        } else if e.file_name().as_bytes().ends_with(b".lock") {
            out.push(p);
        }
    }
    out
}

/// The argument lists of every command that takes a NAME, with `name` in its place.
fn commands(name: &OsStr) -> Vec<Vec<OsString>> {
    let n = name.to_os_string();
    let args = |v: &[&str]| -> Vec<OsString> {
        v.iter().map(|a| if *a == "NAME" { n.clone() } else { OsString::from(a) }).collect()
    };
    vec![
        args(&["status", "NAME"]),
        args(&["status", "NAME", "--json"]),
        args(&["start", "NAME"]),
        args(&["stop", "NAME"]),
        args(&["restart", "NAME"]),
        args(&["exec", "NAME", "--", "true"]),
        args(&["shell", "NAME"]),
        args(&["logs", "NAME"]),
        args(&["destroy", "NAME"]),
    ]
}

/// Run `args`, assert a usage error about NAME and that nothing changed.
#[track_caller]
fn refused(s: &Scene, args: &[OsString], outside: &[&Path]) {
    let argv: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
    let shown = format!("container {}", args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "));
    let out = s.run(&argv);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EX_USAGE), "`{shown}` must be a usage error (64):\n{err}");
    assert!(out.stdout.is_empty(), "`{shown}` printed to stdout: {}", String::from_utf8_lossy(&out.stdout));
    assert!(
        err.contains("for '<NAME>'") || err.contains("for '[NAME]'"),
        "`{shown}`: the error does not name the argument:\n{err}"
    );
    assert!(
        err.contains("lowercase letters, digits and `-`"),
        "`{shown}`: the error does not say what a name is:\n{err}"
    );
    for f in s.planted() {
        assert!(f.is_file(), "`{shown}` removed {}", f.display());
    }
    let mut found = locks(s.tmp.path());
    found.extend(outside.iter().map(|d| d.join(".lock")).filter(|l| l.exists()));
    assert!(found.is_empty(), "`{shown}` created {found:?}");
}

/// Names that reach outside `containers/<name>` or are no name: each with the host
/// folders outside the temp scene it would reach (their `.lock` must not appear).
fn attacks(s: &Scene) -> Vec<(OsString, Vec<PathBuf>)> {
    let mut v: Vec<(OsString, Vec<PathBuf>)> = vec![
        (s.victim().into(), vec![]),
        ("..".into(), vec![]),
        ("../x".into(), vec![]),
        ("../../victim".into(), vec![]),
        (".".into(), vec![]),
        ("".into(), vec![]),
        ("web/".into(), vec![]),
        ("web/volumes".into(), vec![]),
        ("Web".into(), vec![]),
        ("web app".into(), vec![]),
        ("web\n".into(), vec![]),
        ("a".repeat(32).into(), vec![]),
        (OsStr::from_bytes(b"web\xff").into(), vec![]),
    ];
    // Absolute host paths: only for commands that cannot delete (see below).
    v.push(("/".into(), vec![PathBuf::from("/")]));
    v.push(("/etc".into(), vec![PathBuf::from("/etc")]));
    v
}

#[test]
fn every_command_taking_a_name_refuses_a_path_or_odd_name_and_touches_nothing() {
    let s = Scene::new();
    for (name, outside) in attacks(&s) {
        // A lock these names could leave on the host before the check existed: do not
        // count (or leave) one that was there already.
        let before: Vec<bool> = outside.iter().map(|d| d.join(".lock").exists()).collect();
        let outside: Vec<&Path> = outside.iter().zip(&before).filter(|(_, b)| !**b).map(|(d, _)| d.as_path()).collect();
        for args in commands(&name) {
            refused(&s, &args, &outside);
        }
    }
}

#[test]
fn destroy_volumes_refuses_a_path_and_deletes_nothing() {
    let s = Scene::new();
    // Never `/` or `/etc` here: without the check these would delete host trees.
    for name in [s.victim().into_os_string(), "..".into(), "../x".into(), "../../victim".into(), ".".into(), "".into()]
    {
        refused(&s, &["destroy".into(), "--volumes".into(), name.clone()], &[]);
        refused(&s, &["destroy".into(), name, "--volumes".into()], &[]);
    }
    assert!(s.root().join("containers/web").is_dir(), "the container folder went");
}

#[test]
fn a_valid_name_still_reaches_the_command() {
    let s = Scene::new();
    // `web` has a folder but no state: destroy says so (exit 1), not a usage error.
    let out = s.run(&["destroy".as_ref(), "web".as_ref()]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("web"));
    let out = s.run(&["status".as_ref(), "nope".as_ref()]);
    assert_ne!(out.status.code(), Some(EX_USAGE), "{}", String::from_utf8_lossy(&out.stderr));
    for f in s.planted() {
        assert!(f.is_file(), "{} went", f.display());
    }
}
