//! `container __man DIR`: the man pages, made from the command line's own definition
//! (clap_mangen): `container.1` and one page per subcommand (`container-apply.1`,
//! `container-secret-list.1`, …), so they never say other than `--help` does.
//!
//! Like the executor's entry points it is dispatched before the parser: it is for
//! the package build (packaging/deb.sh), not a command of the interface, so no help,
//! suggestion or completion shows it.

use super::Cli;
use clap::CommandFactory;
use std::path::{Path, PathBuf};

/// The argument that asks for the man pages.
pub const MAN_ARG: &str = "__man";

/// Writes every page into `dir` (created), returning the files written.
pub fn write_pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    page(&cmd, dir, &mut written)?;
    Ok(written)
}

/// The page of `cmd`, then those of its visible subcommands.
fn page(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let version = cmd.get_version().unwrap_or_default();
    let man = clap_mangen::Man::new(cmd.clone())
        .manual("container manual")
        .source(format!("container {version}"))
        .date(date());
    let mut roff = Vec::new();
    man.render(&mut roff)?;
    let mut roff = String::from_utf8_lossy(&roff).into_owned();
    // clap_mangen calls the `after_help` text EXTRA; ours starts with the examples.
    roff = roff.replacen(".SH EXTRA\nExamples:\n", ".SH EXAMPLES\n", 1);
    if cmd.get_name() != "container" {
        roff = roff.replacen(".SH VERSION", ".SH \"SEE ALSO\"\ncontainer(1)\n.SH VERSION", 1);
    }
    let file = dir.join(man.get_filename());
    std::fs::write(&file, roff)?;
    written.push(file);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        page(sub, dir, written)?;
    }
    Ok(())
}

/// The pages' date, `YYYY-MM-DD` (without one, man shows the source as the date):
/// that of `SOURCE_DATE_EPOCH` for a reproducible package, else today's.
fn date() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse::<i64>().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
    });
    super::since::rfc3339(secs.saturating_mul(1_000_000_000)).chars().take(10).collect()
}

/// `container __man DIR`.
pub fn main(args: &[std::ffi::OsString]) -> std::process::ExitCode {
    let [dir] = args else {
        errln!("usage: container {MAN_ARG} DIR");
        return std::process::ExitCode::from(super::EXIT_USAGE);
    };
    match write_pages(Path::new(dir)) {
        Ok(files) => {
            outln!("wrote {} man pages to {}", files.len(), Path::new(dir).display());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            errln!("container {MAN_ARG}: {}: {e}", Path::new(dir).display());
            std::process::ExitCode::FAILURE
        }
    }
}
