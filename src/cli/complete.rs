//! Dynamic shell completions: the script `container completions SHELL` prints asks
//! the binary itself at each TAB (clap_complete's `CompleteEnv`, through the variable
//! [`VAR`]), so it completes what only a run can know: the containers of the state
//! root (as `list` finds them), the services and secrets of one, and `explain` paths.
//!
//! Invariant: completing reads, never changes anything (no lock, no reap of a
//! crashed container), and fails quietly: an unreadable state root completes nothing.

use super::Cli;
use clap::CommandFactory;
use clap_complete::engine::CompletionCandidate;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

/// The variable that asks the binary to complete instead of run (`VAR=bash container
/// -- WORDS…`, as the printed script calls it). Not clap's default `COMPLETE`: a name
/// that belongs to us, so an unrelated variable never turns a run into a completion.
pub const VAR: &str = "_CONTAINER_COMPLETE";

/// Answers a completion request, if this run is one (then exits).
pub fn answer_if_asked() {
    clap_complete::CompleteEnv::with_factory(Cli::command).var(VAR).complete();
}

/// The registration script for `shell`: it runs `completer` at each TAB. `container
/// completions` passes its own path when it was run by one (`./target/debug/container`),
/// else `container`, the one on PATH.
pub fn script(shell: clap_complete::Shell, completer: &str, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Zsh};
    let shell: &dyn EnvCompleter = match shell {
        clap_complete::Shell::Bash => &Bash,
        clap_complete::Shell::Elvish => &Elvish,
        clap_complete::Shell::Fish => &Fish,
        clap_complete::Shell::PowerShell => &Powershell,
        clap_complete::Shell::Zsh => &Zsh,
        _ => &Bash,
    };
    shell.write_registration(VAR, "container", "container", completer, out)?;
    if shell.name() == "zsh" {
        // Autoloaded from a `_container` file in $fpath, the file's body runs at the
        // first TAB: it then completes that TAB too, not only the next ones.
        writeln!(
            out,
            "if [ \"$funcstack[1]\" = \"_container\" ]; then\n    _clap_dynamic_completer_container \"$@\"\nfi"
        )?;
    }
    Ok(())
}

/// The words being completed (`container status we`), as the script passes them:
/// after the `--` that follows the completer's own path.
fn words() -> Vec<OsString> {
    let args: Vec<OsString> = std::env::args_os().collect();
    match args.iter().position(|a| a == "--") {
        Some(i) => args[i + 1..].to_vec(),
        None => Vec::new(),
    }
}

/// The long and short options (`--tail`, `-w`) of `container` and its subcommands
/// that take a value: the word after one is its value, not an argument.
fn value_options() -> Vec<String> {
    fn walk(cmd: &clap::Command, out: &mut Vec<String>) {
        for a in cmd.get_arguments().filter(|a| !a.is_positional()) {
            if a.get_num_args().is_some_and(|n| n.takes_values()) || a.get_action().takes_values() {
                out.extend(a.get_long().map(|l| format!("--{l}")));
                out.extend(a.get_short().map(|s| format!("-{s}")));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out = Vec::new();
    walk(&Cli::command(), &mut out);
    out
}

/// The plain words of a command line (no options, no option values), without the
/// command itself and the word under the cursor (the last one).
fn positionals(words: &[OsString]) -> Vec<String> {
    let takes = value_options();
    let mut out = Vec::new();
    let mut skip = false;
    let before_cursor = &words[1.min(words.len())..words.len().saturating_sub(1)];
    for w in before_cursor {
        let w = w.to_string_lossy();
        if std::mem::take(&mut skip) {
            continue;
        }
        if w.starts_with('-') {
            skip = !w.contains('=') && takes.iter().any(|t| *t == w);
            continue;
        }
        out.push(w.into_owned());
    }
    out
}

/// The state root the command line names (`--root DIR`, `--root=DIR`), else
/// `CONTAINER_ROOT`, else the default: where `list` would look.
fn state_root(words: &[OsString]) -> PathBuf {
    let mut it = words.iter();
    let mut found = None;
    while let Some(w) = it.next() {
        if w == "--root" {
            found = it.next().map(PathBuf::from);
        } else if let Some(v) = w.to_str().and_then(|w| w.strip_prefix("--root=")) {
            found = Some(PathBuf::from(v));
        }
    }
    found
        .or_else(|| std::env::var_os("CONTAINER_ROOT").filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(crate::runtime::layout::DEFAULT_ROOT))
}

/// The containers of the state root (`container status <TAB>`).
pub fn names() -> Vec<CompletionCandidate> {
    let root = state_root(&words());
    crate::runtime::names(&root).into_iter().map(CompletionCandidate::new).collect()
}

/// The container named after subcommand `sub` (`logs web <TAB>`: `web`) and its plan:
/// the applied one, else that of an apply going on or interrupted.
fn plan_after(sub: &str) -> Option<crate::plan::Plan> {
    let words = words();
    let pos = positionals(&words);
    let name = pos.iter().skip_while(|w| *w != sub).nth(1)?;
    let root = state_root(&words);
    crate::runtime::applied(&root, name).ok().flatten().or_else(|| crate::runtime::pending(&root, name).ok().flatten())
}

/// The services of the container before the cursor (`container logs web <TAB>`).
pub fn services() -> Vec<CompletionCandidate> {
    plan_after("logs").map(|p| p.services.into_keys().map(CompletionCandidate::new).collect()).unwrap_or_default()
}

/// The secrets of the container before the cursor (`container secret regenerate web <TAB>`).
pub fn secrets() -> Vec<CompletionCandidate> {
    plan_after("regenerate")
        .map(|p| p.secrets.iter().map(|s| CompletionCandidate::new(s.to_string())).collect())
        .unwrap_or_default()
}

/// `explain` paths: the fields below the part typed so far (`services.ca` offers
/// `services.caddy`).
pub fn explain_paths(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(current) = current.to_str() else { return Vec::new() };
    let (parent, _) = current.rsplit_once('.').unwrap_or(("", current));
    let prefix = if parent.is_empty() { String::new() } else { format!("{parent}.") };
    crate::schema::fields(parent)
        .into_iter()
        .map(|(field, help)| (format!("{prefix}{field}"), help))
        .filter(|(path, _)| path.starts_with(current))
        .map(|(path, help)| CompletionCandidate::new(path).help(help.map(Into::into)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn option_values_are_not_positionals() {
        let w = os(&["container", "--root", "/r", "logs", "--tail", "5", "web", "-f", ""]);
        assert_eq!(positionals(&w), ["logs", "web"]);
        let w = os(&["container", "--root=/r", "logs", "--since=10m", "web", "x"]);
        assert_eq!(positionals(&w), ["logs", "web"]);
    }

    #[test]
    fn the_root_is_the_one_typed_last() {
        assert_eq!(state_root(&os(&["container", "--root", "/a", "list", "--root=/b"])), PathBuf::from("/b"));
        assert_eq!(state_root(&os(&["container", "list", "--root", "/a", ""])), PathBuf::from("/a"));
    }

    #[test]
    fn explain_paths_follow_the_dots() {
        let paths = |p: &str| -> Vec<String> {
            explain_paths(OsStr::new(p)).iter().map(|c| c.get_value().to_string_lossy().into_owned()).collect()
        };
        assert!(paths("").contains(&"services".to_string()), "{:?}", paths(""));
        assert_eq!(paths("services.cad"), ["services.caddy"]);
        assert!(paths("services.caddy.").iter().any(|p| p == "services.caddy.sites"), "{:?}", paths("services.caddy."));
        assert!(paths("nosuchfield.").is_empty());
    }
}
