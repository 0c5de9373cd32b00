//! Secrets of an existing container, and `logs` after a failed first apply.
//!
//! - A secret's file that is missing, empty or not a regular file, of a container
//!   whose applied plan uses it, is an error that names the file and the fix — from
//!   `plan` and `apply` (and `restart`) alike — and nothing changes: never a silent
//!   new value (data such as a database is tied to the old one), never an empty
//!   password. A first apply still generates them.
//! - `container secret regenerate NAME KEY` records the request; `plan` shows it as an
//!   update of the secret with the files it rewrites and the services it restarts;
//!   `apply` makes the new value and carries that out; `plan` is clean after.
//! - `container logs NAME` works for a container that has only `pending.json` (its
//!   first apply failed): the failure message points there.
//!
//! Unit tier: the binary on a throwaway state root, hand-made state (no container
//! runs). Host tier (`require_host!`): `host`-base containers without a network
//! (`mode = "none"`), so this suite needs no addresses (its salt, 139, is unused).

mod support;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use support::*;

/// A `host`-base spec (after `name`) whose hook renders `/srv/app/key` from the
/// secret `app-key` and runs `app` (which uses the file) and `idle`.
fn spec_body(idle: &str) -> String {
    format!(
        r#"base = "host"
[network]
mode = "none"

[processes.idle]
command = ["/bin/sleep", "{idle}"]

[[hooks]]
inline = '''
fn on_plan(plan) {{
    plan.add_file("/srv/app/key", ["key=", secret("app-key"), "\n"], "0644", "root:root");
    plan.add_service("app", #{{ command: ["/bin/sleep", "infinity"], uses: ["/srv/app/key"] }});
    plan
}}
'''
"#
    )
}

// ---- unit tier: hand-made state, `plan` and the `secret` commands ----------------

/// A throwaway state root holding container `name` as if applied from `body`:
/// `state.json` is the plan `plan --json` prints, `secrets/app-key` has a value.
struct Fake {
    root: tempfile::TempDir,
    spec: std::path::PathBuf,
    name: String,
}

impl Fake {
    fn new(name: &str) -> Fake {
        let root = tempfile::tempdir().unwrap();
        let spec = root.path().join("spec.toml");
        std::fs::write(&spec, format!("name = \"{name}\"\n{}", spec_body("infinity"))).unwrap();
        let f = Fake { root, spec, name: name.to_string() };
        let out = f.cmd().args(["plan", "--json"]).arg(&f.spec).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let dir = f.dir();
        std::fs::create_dir_all(dir.join("secrets")).unwrap();
        std::fs::write(dir.join("state.json"), serde_json::to_vec(&v["plan"]).unwrap()).unwrap();
        std::fs::write(dir.join("secrets/app-key"), "s3cretvalue").unwrap();
        f
    }
    fn dir(&self) -> std::path::PathBuf {
        self.root.path().join("containers").join(&self.name)
    }
    fn cmd(&self) -> assert_cmd::Command {
        isolated(self.root.path())
    }
    fn plan(&self) -> std::process::Output {
        self.cmd().arg("plan").arg(&self.spec).output().unwrap()
    }
}

#[track_caller]
fn refused_naming_the_file(out: &std::process::Output, name: &str, what: &str, file: &Path) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stdout: {}\nstderr: {err}", text(&out.stdout));
    assert!(err.contains(&format!("secret `app-key` of container `{name}` {what}")), "{err}");
    assert!(err.contains(&file.display().to_string()), "the message does not name {}:\n{err}", file.display());
    assert!(err.contains(&format!("container secret regenerate {name} app-key")), "no way out:\n{err}");
}

#[test]
fn plan_of_an_applied_container_is_clean_with_its_secret_in_place() {
    let f = Fake::new("sok");
    let out = f.plan();
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
}

#[test]
fn plan_refuses_an_empty_or_missing_secret_of_an_applied_container() {
    let f = Fake::new("sempty");
    let file = f.dir().join("secrets/app-key");
    std::fs::write(&file, "").unwrap();
    refused_naming_the_file(&f.plan(), "sempty", "is empty", &file);
    std::fs::write(&file, "\n").unwrap();
    refused_naming_the_file(&f.plan(), "sempty", "is empty", &file);
    std::fs::remove_file(&file).unwrap();
    refused_naming_the_file(&f.plan(), "sempty", "is missing", &file);
}

#[test]
fn plan_refuses_a_secret_that_is_a_symlink_or_a_fifo() {
    let f = Fake::new("slink");
    let file = f.dir().join("secrets/app-key");
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", &file).unwrap();
    refused_naming_the_file(&f.plan(), "slink", "cannot be used", &file);
    std::fs::remove_file(&file).unwrap();
    let c = std::ffi::CString::new(file.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a plain mkfifo(3) on a path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    refused_naming_the_file(&f.plan(), "slink", "cannot be used", &file);
}

#[test]
fn a_new_secret_of_a_new_container_is_planned_not_refused() {
    let root = tempfile::tempdir().unwrap();
    let spec = root.path().join("spec.toml");
    std::fs::write(&spec, format!("name = \"snew\"\n{}", spec_body("infinity"))).unwrap();
    let out = isolated(root.path()).arg("plan").arg(&spec).output().unwrap();
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{shown}{}", text(&out.stderr));
    assert!(shown.contains("+ secret    app-key") && shown.contains("generate its value"), "{shown}");
}

#[test]
fn secret_regenerate_is_shown_by_plan_with_what_it_changes() {
    let f = Fake::new("sregen");
    let out = f.cmd().args(["secret", "regenerate", "sregen", "app-key"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("next `container apply`"), "{}", text(&out.stdout));
    // The value is not touched until apply.
    assert_eq!(std::fs::read_to_string(f.dir().join("secrets/app-key")).unwrap(), "s3cretvalue");
    let out = f.plan();
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{shown}{}", text(&out.stderr));
    let line =
        shown.lines().find(|l| l.starts_with("~ secret")).unwrap_or_else(|| panic!("no secret change:\n{shown}"));
    assert!(line.contains("app-key"), "{line}");
    for effect in ["generate a new value", "write /srv/app/key", "restart app"] {
        assert!(line.contains(effect), "`{effect}` missing: {line}");
    }
    assert!(!line.contains("restart idle"), "a service that does not use the secret restarts: {line}");
    assert!(shown.contains("Plan: 0 to add, 1 to change, 0 to destroy."), "{shown}");
    // It also takes a missing secret's place: the way out the error names.
    std::fs::remove_file(f.dir().join("secrets/app-key")).unwrap();
    assert_eq!(f.plan().status.code(), Some(2));
    // JSON says it as a typed action.
    let out = f.cmd().args(["plan", "--json"]).arg(&f.spec).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = v["changes"].as_array().unwrap().iter().find(|c| c["kind"] == "secret").expect("secret change");
    assert!(c["effects"].as_array().unwrap().iter().any(|e| e["action"] == "regenerate-secret"), "{c}");
}

#[test]
fn secret_regenerate_refuses_an_unknown_secret_or_container() {
    let f = Fake::new("sunknown");
    let out = f.cmd().args(["secret", "regenerate", "sunknown", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("no secret `nope`") && err.contains("app-key"), "{err}");
    assert!(!f.dir().join("regenerate.json").exists());
    let out = f.cmd().args(["secret", "regenerate", "ghost", "app-key"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no container `ghost`"), "{}", text(&out.stderr));
    let out = f.cmd().args(["secret", "regenerate", "../x", "app-key"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64), "a bad name is a usage error");
}

#[test]
fn secret_list_tells_each_secret_state_never_its_value() {
    let f = Fake::new("slist");
    let list = |f: &Fake| {
        let out = f.cmd().args(["secret", "list", "slist"]).output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let shown = list(&f);
    assert!(shown.contains("app-key") && shown.contains("ok") && shown.contains("/srv/app/key"), "{shown}");
    assert!(!shown.contains("s3cretvalue"), "the value is shown:\n{shown}");
    std::fs::write(f.dir().join("secrets/app-key"), "").unwrap();
    assert!(list(&f).contains("empty"), "{}", list(&f));
    f.cmd().args(["secret", "regenerate", "slist", "app-key"]).assert().success();
    assert!(list(&f).contains("new value at next apply"), "{}", list(&f));
}

#[test]
fn logs_of_a_container_with_only_a_pending_plan_prints_its_service_logs() {
    // What a failed first apply leaves: pending.json, no state.json, the logs.
    let f = Fake::new("spend");
    std::fs::rename(f.dir().join("state.json"), f.dir().join("pending.json")).unwrap();
    std::fs::create_dir_all(f.dir().join("run/logs")).unwrap();
    std::fs::write(f.dir().join("run/logs/app.log"), "boom\n").unwrap();
    let out = f.cmd().args(["logs", "spend", "app"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "boom\n");
    let out = f.cmd().args(["logs", "spend"]).output().unwrap();
    assert!(text(&out.stdout).contains("app | boom"), "{}", text(&out.stdout));
    let out = f.cmd().args(["status", "spend", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["base"], "host", "status knows the pending plan: {v}");
    assert_eq!(v["services"], 2, "{v}");
}

// ---- host tier: real containers -------------------------------------------------

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn ct(tag: &str) -> Ct {
    let name = format!("s{}{tag}{}", std::process::id() % 10000, COUNTER.fetch_add(1, Ordering::Relaxed));
    Ct::new(&name, &spec_body("infinity"))
}

/// What must not change when an apply is refused.
#[derive(Debug, PartialEq)]
struct Snapshot {
    pid1: i64,
    app: i64,
    idle: i64,
    key: String,
    state: Vec<u8>,
}

fn snapshot(c: &Ct) -> Snapshot {
    Snapshot {
        pid1: c.pid1(),
        app: c.service_pid("app"),
        idle: c.service_pid("idle"),
        key: c.exec_ok(&["cat", "/srv/app/key"]),
        state: std::fs::read(c.dirs().join("state.json")).unwrap(),
    }
}

#[track_caller]
fn apply_refused(c: &Ct, what: &str) {
    let out = c.apply();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stdout: {}\nstderr: {err}", text(&out.stdout));
    let file = c.dirs().join("secrets/app-key");
    assert!(err.contains(&format!("secret `app-key` of container `{}` {what}", c.name)), "{err}");
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert!(err.contains(&format!("container secret regenerate {} app-key", c.name)), "{err}");
    assert!(!c.dirs().join("pending.json").exists(), "the refused apply began");
}

#[test]
fn an_empty_secret_is_refused_and_nothing_changes() {
    require_host!();
    let c = ct("e");
    c.apply_ok();
    let value = c.secret("app-key");
    assert_eq!(value.len(), 32, "a first apply generates it");
    assert_eq!(c.exec_ok(&["cat", "/srv/app/key"]), format!("key={value}\n"));
    let before = snapshot(&c);
    std::fs::write(c.dirs().join("secrets/app-key"), "").unwrap();
    // The same spec, and one that would restart a service: both refused.
    apply_refused(&c, "is empty");
    c.write(&spec_body("999999"));
    apply_refused(&c, "is empty");
    assert_eq!(snapshot(&c), before, "a refused apply changed the container");
    // restart refuses before it stops anything.
    let out = run(&["restart", &c.name]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("is empty"), "{}", text(&out.stderr));
    assert_eq!(snapshot(&c), before, "a refused restart changed the container");
    assert!(std::fs::read(c.dirs().join("secrets/app-key")).unwrap().is_empty(), "silently regenerated");
    // destroy works.
    ok(&["destroy", &c.name]);
}

#[test]
fn a_missing_secret_is_refused_and_nothing_changes() {
    require_host!();
    let c = ct("m");
    c.apply_ok();
    let before = snapshot(&c);
    std::fs::remove_file(c.dirs().join("secrets/app-key")).unwrap();
    c.write(&spec_body("999999"));
    apply_refused(&c, "is missing");
    assert_eq!(snapshot(&c), before, "a refused apply changed the container");
    assert!(!c.dirs().join("secrets/app-key").exists(), "silently regenerated");
    // The way out the message names: a new value, made by apply.
    ok(&["secret", "regenerate", &c.name, "app-key"]);
    c.apply_ok();
    let value = c.secret("app-key");
    assert_eq!(value.len(), 32);
    assert_eq!(c.exec_ok(&["cat", "/srv/app/key"]), format!("key={value}\n"));
    ok(&["destroy", &c.name]);
}

#[test]
fn secret_regenerate_is_planned_then_applied_live() {
    require_host!();
    let c = ct("r");
    c.apply_ok();
    let old = c.secret("app-key");
    let before = snapshot(&c);
    ok(&["secret", "regenerate", &c.name, "app-key"]);
    assert_eq!(c.secret("app-key"), old, "regenerate changed the value before apply");
    let out = container().arg("plan").arg(c.spec()).stdin(Stdio::null()).output().unwrap();
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{shown}{}", text(&out.stderr));
    assert!(shown.contains("~ secret    app-key") && shown.contains("restart app"), "{shown}");
    let applied = c.apply_ok();
    assert!(applied.contains("restarted app"), "{applied}");
    let new = c.secret("app-key");
    assert_eq!(new.len(), 32);
    assert_ne!(new, old, "no new value");
    assert_eq!(c.exec_ok(&["cat", "/srv/app/key"]), format!("key={new}\n"), "the container does not see it");
    assert_eq!(c.pid1(), before.pid1, "regenerating recreated the container");
    assert_eq!(c.service_pid("idle"), before.idle, "a service that does not use it restarted");
    assert_ne!(c.service_pid("app"), before.app, "the service that uses it was not restarted");
    // Done: the request is gone, plan is clean.
    let out = container().arg("plan").arg(c.spec()).stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!c.dirs().join("regenerate.json").exists());
}

#[test]
fn logs_work_after_a_failed_first_apply() {
    require_host!();
    let name = format!("s{}f{}", std::process::id() % 10000, COUNTER.fetch_add(1, Ordering::Relaxed));
    let c = Ct::new(
        &name,
        r#"base = "host"
[network]
mode = "none"

[processes.boom]
command = ["/bin/sh", "-c", "echo boom >&2; exit 3"]
restart = "no"
ready = { tcp = 1 }
"#,
    );
    let out = c.apply();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}{err}", text(&out.stdout));
    assert!(err.contains(&format!("container logs {name}")), "{err}");
    assert!(!c.dirs().join("state.json").exists() && c.dirs().join("pending.json").exists());
    // What the message says to run works, and shows why.
    let out = run(&["logs", &name]);
    assert!(out.status.success(), "logs: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("boom"), "logs: {}", text(&out.stdout));
    let status = run(&["status", &name]);
    assert!(status.status.success(), "status: {}", text(&status.stderr));
    ok(&["destroy", &name]);
}
