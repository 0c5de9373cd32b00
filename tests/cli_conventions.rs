//! Command-line conventions a script relies on (unit tier: no root, nothing changed).
//!
//! - Exit codes never overlap: a usage error exits 64 (`EX_USAGE`), never 2, which
//!   `plan` uses for "there are changes", nor 0 or 1.
//! - The executor's internal entry point `__supervise` is not part of the user's
//!   interface: not in help, not offered by "did you mean", not completed.

use std::process::{Command, Output};

const EX_USAGE: i32 = 64;

fn container(args: &[&str]) -> Output {
    let root = tempfile::tempdir().expect("tempdir");
    Command::new(env!("CARGO_BIN_EXE_container"))
        .args(args)
        .env("CONTAINER_ROOT", root.path())
        .env("CONTAINER_CACHE", root.path().join("cache"))
        .output()
        .expect("run container")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn usage_errors_exit_64_not_plans_changes_code() {
    for args in [
        &["plan", "--jsn", "x.toml"][..],
        &["up"],
        &["plan", "a.toml", "b.toml"],
        &["validate"],
        &["stop"],
        &["completions", "tcsh"],
        &["secret"],
        &["secret", "regenerate", "x"],
        &["secret", "rotate", "x", "k"],
        &[],
    ] {
        let out = container(args);
        assert_eq!(
            out.status.code(),
            Some(EX_USAGE),
            "`container {}` should be a usage error (64):\n{}",
            args.join(" "),
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "a usage error prints to stderr only");
    }
}

#[test]
fn help_and_version_exit_0_and_document_the_codes() {
    let help = container(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let help = text(&help.stdout);
    assert!(help.contains("64 usage error"), "--help does not document exit code 64:\n{help}");
    assert_eq!(container(&["--version"]).status.code(), Some(0));
    assert_eq!(container(&["plan", "--help"]).status.code(), Some(0));
    assert!(help.contains("secret"), "--help does not list `secret`:\n{help}");
    let secret = container(&["secret", "--help"]);
    assert_eq!(secret.status.code(), Some(0));
    let secret = text(&secret.stdout);
    assert!(secret.contains("regenerate") && secret.contains("list"), "{secret}");
}

#[test]
fn a_real_plan_still_exits_2_for_changes() {
    // The contrast to the usage error above: same command, correct flag.
    let out = container(&["plan", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn the_internal_entry_point_is_never_suggested() {
    for args in [&["up"][..], &["__sup"], &["supervise"], &["_"]] {
        let out = container(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(EX_USAGE), "{err}");
        assert!(!err.contains("__supervise"), "`container {}` mentions the internal command:\n{err}", args.join(" "));
    }
}

#[test]
fn the_internal_entry_point_is_not_in_help() {
    for args in [&["--help"][..], &["help"], &["-h"]] {
        let out = container(args);
        assert!(!text(&out.stdout).contains("supervise"), "`container {}` lists the internal command", args.join(" "));
    }
}

#[test]
fn the_internal_entry_point_is_not_completed() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = container(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.contains("validate"), "{shell}: the completion script lacks the real commands");
        assert!(script.contains("regenerate"), "{shell}: the completion script lacks `secret regenerate`");
        assert!(!script.contains("supervise"), "{shell} completion offers the internal command");
    }
}

#[test]
fn the_internal_entry_point_still_runs() {
    // What the executor relies on: dispatched (and failing on a missing config with
    // the supervisor's own error), and a wrong call is a usage error.
    let out = container(&["__supervise", "/nonexistent/supervisor.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("supervisor"), "{}", text(&out.stderr));
    assert_eq!(container(&["__supervise"]).status.code(), Some(EX_USAGE));
}

#[test]
fn schema_install_writes_the_printed_schema_readable_by_everyone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("usr/share/container/container.schema.json");
    let out = container(&["schema", "--install", "--path", target.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let printed = container(&["schema"]).stdout;
    assert_eq!(std::fs::read(&target).expect("installed"), printed, "the installed schema is what `schema` prints");
    let mode = |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&target), 0o644);
    assert_eq!(mode(target.parent().expect("dir")), 0o755, "editors run as other users");
    // Replacing it again leaves no temporary file behind.
    assert_eq!(container(&["schema", "--install", "--path", target.to_str().expect("utf-8")]).status.code(), Some(0));
    let names: Vec<_> = std::fs::read_dir(target.parent().expect("dir"))
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("container.schema.json")]);
    // --path without --install is a usage error, not a silent print.
    assert_eq!(container(&["schema", "--path", "x.json"]).status.code(), Some(EX_USAGE));
}

#[test]
fn schema_install_defaults_to_usr_share() {
    let out = container(&["schema", "--help"]);
    assert!(text(&out.stdout).contains("/usr/share/container/container.schema.json"), "{}", text(&out.stdout));
}

#[test]
fn bad_logs_values_are_usage_errors_that_say_what_is_accepted() {
    for (args, says) in [
        (&["logs", "web", "--tail", "x"][..], &["--tail", "'x'"][..]),
        (&["logs", "web", "--tail", "-3"], &["'-3'"]),
        (&["logs", "web", "--since", "yesterday"], &["--since", "yesterday", "30s, 10m, 2h", "RFC 3339"]),
        (&["logs", "web", "--since", "2026-12-03"], &["--since", "RFC 3339 time (2026-12-03T22:00:00Z)"]),
        (&["validate", "--format", "xml", "a.toml"], &["--format", "json", "short", "human"]),
    ] {
        let out = container(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(EX_USAGE), "`container {}`:\n{err}", args.join(" "));
        for s in says {
            assert!(err.contains(s), "`container {}` should say `{s}`:\n{err}", args.join(" "));
        }
    }
}

#[test]
fn new_flags_are_documented_with_examples() {
    let logs = text(&container(&["logs", "--help"]).stdout);
    for s in ["--tail <N>", "--since <T>", "--timestamps", "Examples:", "--since 10m", "--tail 20"] {
        assert!(logs.contains(s), "`logs --help` lacks `{s}`:\n{logs}");
    }
    let validate = text(&container(&["validate", "--help"]).stdout);
    for s in ["--format <FORMAT>", "Examples:", "--format short", "--format json", "FILE:LINE:COL: error: MESSAGE"] {
        assert!(validate.contains(s), "`validate --help` lacks `{s}`:\n{validate}");
    }
    let bash = text(&container(&["completions", "bash"]).stdout);
    for s in ["--tail", "--since", "--timestamps", "--format", "json short"] {
        assert!(bash.contains(s), "bash completions lack `{s}`");
    }
}
