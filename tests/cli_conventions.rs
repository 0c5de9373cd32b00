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
    for args in [&["up"][..], &["__sup"], &["supervise"], &["_"], &["__ma"], &["man"]] {
        let out = container(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(EX_USAGE), "{err}");
        for internal in ["__supervise", "__man"] {
            assert!(!err.contains(internal), "`container {}` mentions {internal}:\n{err}", args.join(" "));
        }
    }
}

#[test]
fn the_internal_entry_point_is_not_in_help() {
    for args in [&["--help"][..], &["help"], &["-h"]] {
        let out = container(args);
        let help = text(&out.stdout);
        assert!(!help.contains("supervise"), "`container {}` lists the internal command", args.join(" "));
        assert!(!help.contains("__man"), "`container {}` lists the man page generator", args.join(" "));
    }
}

/// What the completion script's TAB gets: the candidates for the last of `words`
/// (`container status ""` completes the empty word after `status`), one a line.
fn completed(root: &std::path::Path, words: &[&str]) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_container"))
        .arg("--")
        .args(words)
        .env("_CONTAINER_COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", (words.len() - 1).to_string())
        .env("_CLAP_IFS", "\n")
        .env("CONTAINER_ROOT", root)
        .output()
        .expect("run container");
    assert_eq!(out.status.code(), Some(0), "completing {words:?}: {}", text(&out.stderr));
    text(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn the_internal_entry_point_is_not_completed() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = container(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.contains("_CONTAINER_COMPLETE"), "{shell}: the script does not ask the binary:\n{script}");
        assert!(!script.contains("supervise"), "{shell} completion offers the internal command");
    }
    // What the scripts' TAB offers: the real commands, none of the internal ones.
    let root = tempfile::tempdir().expect("tempdir");
    let top = completed(root.path(), &["container", ""]);
    assert!(top.iter().any(|c| c == "validate"), "{top:?}");
    assert!(completed(root.path(), &["container", "secret", ""]).iter().any(|c| c == "regenerate"));
    for words in [&["container", ""][..], &["container", "__"], &["container", "__s"], &["container", "__m"]] {
        let offered = completed(root.path(), words);
        assert!(offered.iter().all(|c| !c.starts_with("__")), "{words:?} offers an internal command: {offered:?}");
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
    let root = tempfile::tempdir().expect("tempdir");
    let logs = completed(root.path(), &["container", "logs", "web", "--"]);
    for s in ["--tail", "--since", "--timestamps"] {
        assert!(logs.iter().any(|c| c == s), "`logs web --<TAB>` lacks `{s}`: {logs:?}");
    }
    assert!(completed(root.path(), &["container", "validate", "--"]).iter().any(|c| c == "--format"));
    let formats = completed(root.path(), &["container", "validate", "--format", ""]);
    assert_eq!(formats, ["human", "json", "short"], "`validate --format <TAB>`");
}

/// Every visible command of the tree under `cmd` (itself first), with its words
/// (`["container", "secret", "list"]`).
fn visible_commands(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<(Vec<String>, clap::Command)>) {
    out.push((path.clone(), cmd.clone()));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        let mut p = path.clone();
        p.push(sub.get_name().to_string());
        visible_commands(sub, p, out);
    }
}

fn command_tree() -> Vec<(Vec<String>, clap::Command)> {
    use clap::CommandFactory;
    let mut cmd = container::cli::Cli::command();
    cmd.build();
    let mut all = Vec::new();
    visible_commands(&cmd, vec!["container".into()], &mut all);
    all
}

#[test]
fn every_command_has_examples_and_every_argument_help() {
    let mut missing = Vec::new();
    for (path, cmd) in command_tree() {
        let line = path.join(" ");
        let after = cmd.get_after_long_help().or(cmd.get_after_help()).map(|h| h.to_string()).unwrap_or_default();
        // An "Examples:" block whose lines run this very command.
        let examples = after
            .strip_prefix("Examples:\n")
            .map(|rest| rest.lines().take_while(|l| !l.is_empty()).filter(|l| l.trim_start().contains(&line)).count());
        if examples.unwrap_or(0) == 0 {
            missing.push(format!("`{line}`: no \"Examples:\" block running `{line} …` in its after_help"));
        }
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if arg.get_help().is_none_or(|h| h.to_string().trim().is_empty()) {
                missing.push(format!("`{line}`: argument `{}` has no help", arg.get_id()));
            }
        }
    }
    assert!(missing.is_empty(), "undocumented:\n  {}", missing.join("\n  "));
}

#[test]
fn man_pages_are_made_for_every_visible_command_and_nothing_internal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_container"))
        .arg("__man")
        .arg(dir.path())
        .env("SOURCE_DATE_EPOCH", "86400")
        .output()
        .expect("run container");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut made: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    made.sort();
    let mut want: Vec<String> = command_tree().iter().map(|(p, _)| format!("{}.1", p.join("-"))).collect();
    want.sort();
    assert_eq!(made, want, "one page per visible command");
    for page in &made {
        let roff = std::fs::read_to_string(dir.path().join(page)).expect("read");
        assert!(roff.contains(".SH EXAMPLES\n"), "{page} has no EXAMPLES section");
        assert!(roff.contains(".SH OPTIONS"), "{page} has no OPTIONS section");
        for internal in ["supervise", "__man", "__unpack"] {
            assert!(!roff.contains(internal), "{page} mentions {internal}");
        }
    }
    let apply = std::fs::read_to_string(dir.path().join("container-apply.1")).expect("read");
    // A date, else man takes the source for it and shows no manual's name.
    let version = env!("CARGO_PKG_VERSION");
    let th = format!(".TH container-apply 1 1970-01-02 \"container {version}\" \"container manual\"\n");
    assert!(apply.contains(&th), "no `{th}` in:\n{apply}");
    assert!(apply.contains("\\-\\-dry\\-run") && apply.contains("container(1)"), "{apply}");
    assert!(std::fs::read_to_string(dir.path().join("container.1")).expect("read").contains("container\\-apply(1)"));
    // Usage errors, like the other internal entry points.
    assert_eq!(container(&["__man"]).status.code(), Some(EX_USAGE));
}

/// `container`'s bash completion, sourced in a real bash, asked as a TAB asks it:
/// the words in COMP_WORDS, the cursor in COMP_CWORD, the registered function called
/// with (command, current word, previous word); what it put in COMPREPLY, a line each.
fn bash_tab(root: &std::path::Path, words: &[&str]) -> Vec<String> {
    let script = container(&["completions", "bash"]);
    assert_eq!(script.status.code(), Some(0), "{}", text(&script.stderr));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("container.bash");
    std::fs::write(&file, &script.stdout).expect("write the script");
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let driver = format!(
        r#"set -u
source '{script}'
spec=$(complete -p container) || {{ echo "no completion registered for container" >&2; exit 3; }}
fn=$(sed -E 's/.* -F ([^ ]+) .*/\1/' <<<"$spec")
COMP_WORDS=({words})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
COMP_TYPE=9
COMPREPLY=()
"$fn" container "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}"
"#,
        script = file.display(),
        words = quoted.join(" ")
    );
    let out = Command::new("bash")
        .arg("--norc")
        .arg("-c")
        .arg(driver)
        .env("CONTAINER_ROOT", root)
        .output()
        .expect("run bash");
    assert_eq!(out.status.code(), Some(0), "bash: {}", text(&out.stderr));
    text(&out.stdout).lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
}

#[test]
fn bash_completes_container_names_services_and_explain_paths() {
    let root = tempfile::tempdir().expect("tempdir");
    // A container as `list` finds it: its applied plan in the state root (the plan
    // `plan --json` prints for a spec; nothing runs).
    let spec = root.path().join("tabbed.toml");
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/hello-host.toml")).unwrap();
    std::fs::write(&spec, example.replace("name = \"hello\"", "name = \"tabbed\"")).unwrap();
    let planned = container(&["--root", root.path().to_str().unwrap(), "plan", "--json", spec.to_str().unwrap()]);
    assert_eq!(planned.status.code(), Some(2), "{}", text(&planned.stderr));
    let planned: serde_json::Value = serde_json::from_slice(&planned.stdout).expect("plan --json");
    let ct = root.path().join("containers/tabbed");
    std::fs::create_dir_all(&ct).unwrap();
    std::fs::write(ct.join("state.json"), planned["plan"].to_string()).unwrap();
    // Not a container: a folder without a plan.
    std::fs::create_dir_all(root.path().join("containers/leftover")).unwrap();
    let list = Command::new(env!("CARGO_BIN_EXE_container")).env("CONTAINER_ROOT", root.path()).arg("list").output();
    assert!(text(&list.expect("list").stdout).contains("tabbed"), "`list` sees the container");

    let names = bash_tab(root.path(), &["container", "status", ""]);
    assert!(names.contains(&"tabbed".to_string()), "`container status <TAB>`: {names:?}");
    assert!(!names.contains(&"leftover".to_string()), "`container status <TAB>`: {names:?}");
    assert_eq!(bash_tab(root.path(), &["container", "destroy", "ta"]), ["tabbed"]);
    assert_eq!(bash_tab(root.path(), &["container", "logs", "tabbed", ""]).first().map(String::as_str), Some("web"));
    assert_eq!(bash_tab(root.path(), &["container", "explain", "services.cad"]), ["services.caddy"]);
    // --root on the line wins over CONTAINER_ROOT.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let none = bash_tab(elsewhere.path(), &["container", "--root", root.path().to_str().unwrap(), "stop", "t"]);
    assert_eq!(none, ["tabbed"]);
    assert!(bash_tab(elsewhere.path(), &["container", "stop", "t"]).is_empty());
    // No internal command, and the real ones.
    assert!(bash_tab(root.path(), &["container", "__"]).is_empty(), "`container __<TAB>` offers something");
    let top = bash_tab(root.path(), &["container", ""]);
    assert!(top.contains(&"apply".to_string()) && top.iter().all(|c| !c.starts_with("__")), "{top:?}");
}
