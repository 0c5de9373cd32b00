//! The command line: a thin layer over the library.
//!
//! Invariant: commands parse arguments, call the library, print, and map outcomes to
//! exit codes (0 ok / no changes, 2 changes, 1 error, 64 usage error). No logic lives
//! here that a test of the library could not reach.
//!
//! Exit codes are disjoint: a usage error (unknown command or option, missing
//! argument) exits [`EXIT_USAGE`] (64, BSD's `EX_USAGE`), never 2, which `plan`
//! uses for "there are changes". The executor's internal entry point
//! (`container __supervise CONFIG`) and the build's unpacker (`container __unpack
//! ROOT DEST STRIP`, the tarball on stdin) are dispatched before the parser, so they
//! never appear in help, "did you mean" tips or shell completions; so is the man
//! page generator (`container __man DIR`, see `man`).

/// `println!` that never panics: a write error (EPIPE from `| head -c1`, a closed
/// terminal) is ignored, so a command that changes the host never stops halfway
/// because its output went nowhere. Every line the CLI prints goes through these.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// `print!` that ignores write errors (see [`outln!`]).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let mut o = std::io::stdout();
        let _ = write!(o, $($t)*).and_then(|_| o.flush());
    }};
}

/// `eprintln!` that ignores write errors (see [`outln!`]).
macro_rules! errln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

/// `eprint!` that ignores write errors (see [`outln!`]).
macro_rules! err {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($t)*);
    }};
}

mod build;
mod complete;
mod man;
mod plan;
mod run;
mod since;

use crate::vocab::values::Name;
use clap::builder::{OsStringValueParser, TypedValueParser};
use clap::{Parser, Subcommand};
use clap_complete::engine::{ArgValueCandidates, ArgValueCompleter};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code of a usage error (sysexits.h `EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;

/// The executor's entry point for PID 1 (see `runtime::prepare::init_program`).
pub const SUPERVISE: &str = "__supervise";

/// A container NAME argument, checked by the spec's own rule ([`Name::parse`]) while
/// the arguments are parsed: a path, `..`, `.`, an empty or odd name is a usage error
/// (exit 64) that names the argument and says what is allowed, before any command
/// touches the state root. Bytes that are not UTF-8 are shown replaced, and refused.
fn container_name() -> impl TypedValueParser<Value = Name> {
    OsStringValueParser::new().try_map(|s| Name::parse(&s.to_string_lossy()))
}

#[derive(Debug, Parser)]
#[command(
    name = "container",
    version,
    about = "Build and run service containers from declarative specs",
    after_help = "Examples:\n  \
        container plan web.toml          # what apply would change (exit 2: changes)\n  \
        container apply web.toml         # build, start, wait until ready\n  \
        container list\n  \
        container logs web -f\n  \
        container destroy web\n\n\
        Exit codes: 0 success (plan: no changes), 2 plan: changes, 1 error, 64 usage error.",
    propagate_version = true
)]
pub struct Cli {
    /// State root (applied plans, volumes, secrets).
    #[arg(long, global = true, env = "CONTAINER_ROOT", default_value = crate::runtime::layout::DEFAULT_ROOT, value_name = "DIR")]
    pub root: PathBuf,
    /// Layer cache (debootstrap bases, package layers, apt downloads).
    #[arg(long, global = true, env = "CONTAINER_CACHE", default_value = crate::runtime::layers::DEFAULT_CACHE, value_name = "DIR")]
    pub cache: PathBuf,
    /// Host configuration: address pools, Debian mirrors, name servers (a missing
    /// default file means the built-in defaults).
    #[arg(long, global = true, env = "CONTAINER_CONFIG", default_value = crate::spec::host::DEFAULT_PATH, value_name = "FILE")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

/// `#[arg(add = names())]`: a NAME argument completes to the containers of the state root.
fn names() -> ArgValueCandidates {
    ArgValueCandidates::new(complete::names)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check spec files; print every problem, or nothing. Exit 0: all valid, 1: a
    /// problem.
    #[command(after_help = "Examples:\n  container validate web.toml db.yaml\n  \
        container validate --format short specs/*.toml     # FILE:LINE:COL: error: MESSAGE\n  \
        container validate --format json web.toml | jq '.problems[].message'")]
    Validate {
        /// Spec files (*.toml, *.yaml, *.yml).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// How problems are printed: `human` (snippets on stderr), `json` (one document
        /// on stdout: {"ok", "problems": [{"file", "line", "column", "message",
        /// "help"}]}) or `short` (`FILE:LINE:COL: error: MESSAGE` lines on stdout, for
        /// CI annotations).
        #[arg(long, value_enum, default_value_t = plan::ProblemFormat::Human, value_name = "FORMAT")]
        format: plan::ProblemFormat,
    },
    /// Show what `apply` would change. Exit 0: no changes, 2: changes, 1: error (64:
    /// usage error).
    #[command(after_help = "Examples:\n  container plan web.toml\n  \
        container plan                         # the embedded example (examples/hello-host.toml)\n  \
        container plan --json web.toml | jq '.changes'")]
    Plan {
        /// Spec file; without it, the embedded example (examples/hello-host.toml).
        file: Option<PathBuf>,
        /// Print the changes and the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Converge the host to a spec: create or update the container, start it, wait
    /// until its services are ready.
    #[command(after_help = "Examples:\n  container apply web.toml\n  \
        container apply                        # the embedded example: a web server on tcp/8080\n  \
        container apply --dry-run web.toml     # the plan only, like `container plan`")]
    Apply {
        /// Spec file; without it, the embedded example (examples/hello-host.toml).
        file: Option<PathBuf>,
        /// Print the plan only; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Build (or reuse) the root layers of a spec without starting anything.
    #[command(
        after_help = "Examples:\n  container build specs/caddy.toml       # then `container apply` starts at once\n  \
        container build --cache /srv/cache web.toml"
    )]
    Build {
        /// Spec file.
        file: PathBuf,
    },
    /// List the cached layers: size, content and which containers use them.
    #[command(after_help = "Examples:\n  container images\n  \
        container images --json | jq '.[].size'")]
    Images {
        /// Print the layers as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove cached layers no container uses (never one in use).
    #[command(after_help = "Examples:\n  container gc --dry-run\n  container gc")]
    Gc {
        /// Only print what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// List the containers under the state root.
    #[command(after_help = "Examples:\n  container list\n  \
        container list --json | jq -r '.[] | select(.state != \"running\") | .name'")]
    List {
        /// Print one JSON object per container (name, state, addresses, services).
        #[arg(long)]
        json: bool,
    },
    /// Show a container's services, init tasks, pids and restarts (all containers
    /// without a name).
    #[command(after_help = "Examples:\n  container status web\n  \
        container status                       # every container\n  \
        container status web --json | jq '.status.services'")]
    Status {
        /// The container; without it, all of them.
        #[arg(value_parser = container_name(), add = names())]
        name: Option<Name>,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start a stopped container from its applied spec (and record that it is to run,
    /// also after a reboot).
    #[command(after_help = "Examples:\n  container start web\n  \
        container start --all                  # at boot (dist/systemd/container.service)\n  \
        container start web --wait             # under systemd (dist/systemd/container@.service)")]
    Start {
        /// The container.
        #[arg(value_parser = container_name(), required_unless_present = "all", add = names())]
        name: Option<Name>,
        /// Bring every container of the state root back to what it should be: start
        /// those to run, leave those `container stop` stopped (at boot:
        /// dist/systemd/container.service).
        #[arg(long, conflicts_with_all = ["name", "wait"])]
        all: bool,
        /// Then tell systemd it is ready (sd_notify, when NOTIFY_SOCKET is set) and
        /// wait while PID 1 runs: exit 0 when it was stopped on purpose, 1 when it
        /// died (dist/systemd/container@.service).
        #[arg(long)]
        wait: bool,
    },
    /// Stop a container: services in reverse order, SIGTERM then SIGKILL. It stays
    /// stopped, also after a reboot, until started again.
    #[command(after_help = "Examples:\n  container stop web\n  \
        container stop web --timeout 30\n  \
        container stop --all                   # at shutdown; `start --all` brings them back")]
    Stop {
        /// The container.
        #[arg(value_parser = container_name(), required_unless_present = "all", add = names())]
        name: Option<Name>,
        /// Stop every running container, keeping what each is to be at the next boot
        /// (for shutdown: `start --all` brings back those that ran).
        #[arg(long, conflicts_with = "name")]
        all: bool,
        /// Seconds each service gets between SIGTERM and SIGKILL (default 10).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
    },
    /// Record that a container is to run at boot (`start --all`), without starting it.
    #[command(after_help = "Examples:\n  container enable web")]
    Enable {
        /// The container.
        #[arg(value_parser = container_name(), add = names())]
        name: Name,
    },
    /// Record that a container is to stay stopped at boot, without stopping it.
    #[command(after_help = "Examples:\n  container disable web")]
    Disable {
        /// The container.
        #[arg(value_parser = container_name(), add = names())]
        name: Name,
    },
    /// Stop and start a container.
    #[command(after_help = "Examples:\n  container restart web\n  \
        container restart web --timeout 30")]
    Restart {
        /// The container.
        #[arg(value_parser = container_name(), add = names())]
        name: Name,
        /// Seconds each service gets between SIGTERM and SIGKILL (default 10).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
    },
    /// Run a command in a running container (its namespaces, root and cgroups).
    /// The command's exit code is the exit code.
    #[command(after_help = "Examples:\n  container exec web -- cat /etc/os-release\n  \
        container exec web -w /srv/www -e LANG=C.UTF-8 -- ls -l\n  \
        container exec -t web -- top")]
    Exec {
        /// The container.
        #[arg(value_parser = container_name(), add = names())]
        name: Name,
        /// Give the command a terminal (a pty from the container's devpts).
        #[arg(short, long)]
        tty: bool,
        /// Working directory inside.
        #[arg(short, long, default_value = "/")]
        workdir: String,
        /// Extra environment, KEY=VALUE.
        #[arg(short, long, value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// An interactive shell in a running container (bash if it has one, else sh).
    #[command(after_help = "Examples:\n  container shell web")]
    Shell {
        /// The container.
        #[arg(value_parser = container_name(), add = names())]
        name: Name,
    },
    /// Print a container's service logs (stdout and stderr of each service, its
    /// probes and reloads), one service after the other.
    #[command(
        after_help = "Examples:\n  container logs web                      # every service, each line prefixed\n  \
        container logs web caddy --tail 20 -f   # the last 20 lines, then what comes\n  \
        container logs web --since 10m --timestamps\n  \
        container logs web --since 2026-12-03T22:00:00Z\n\n\
        Times are those at which the supervisor received each line."
    )]
    Logs {
        /// The container.
        #[arg(value_parser = container_name(), add = names())]
        name: Name,
        /// One service (default: all, each line prefixed with its service).
        #[arg(add = ArgValueCandidates::new(complete::services))]
        service: Option<String>,
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines of each service.
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
        /// Only lines received since T: a duration back from now (30s, 10m, 2h, 1d,
        /// 1h30m) or an RFC 3339 time (2026-12-03T22:00:00Z, 2026-12-03T23:00:00+01:00).
        #[arg(long, value_name = "T", value_parser = since::since_arg)]
        since: Option<i64>,
        /// Prefix each line with the time it was received (RFC 3339, UTC, nanoseconds;
        /// `-` for a line from before times were recorded).
        #[arg(short, long)]
        timestamps: bool,
    },
    /// Stop and delete a container. Its volumes and secrets are kept unless --volumes.
    #[command(
        after_help = "Examples:\n  container destroy web                  # volumes and secrets kept for the next apply\n  \
        container destroy web --volumes        # everything, data included"
    )]
    Destroy {
        /// The container.
        #[arg(value_parser = container_name(), add = names())]
        name: Name,
        /// Delete the volumes and secrets too.
        #[arg(long)]
        volumes: bool,
    },
    /// A container's generated secrets (passwords, keys): list them, or ask the next
    /// `apply` for a new value of one.
    #[command(after_help = "Examples:\n  container secret list web\n  \
        container secret regenerate web mysql-shop && container apply web.toml")]
    Secret {
        #[command(subcommand)]
        action: SecretCommand,
    },
    /// Print the JSON schema (draft-07) of the spec language, or install it where
    /// editors can find it by an absolute path.
    #[command(after_help = "Examples:\n  container schema > container.schema.json\n  \
        container schema --install             # /usr/share/container/container.schema.json\n  \
        container schema --install --path ~/.local/share/container/container.schema.json")]
    Schema {
        /// Write it to /usr/share/container/container.schema.json (or --path) instead
        /// of printing it; folders are created, the file is replaced atomically.
        #[arg(long)]
        install: bool,
        /// Where --install writes the schema.
        #[arg(long, requires = "install", value_name = "FILE", default_value = crate::schema::INSTALL_PATH)]
        path: PathBuf,
    },
    /// Describe a part of the spec language, e.g. `services.caddy.sites`.
    #[command(after_help = "Examples:\n  container explain                      # the top level\n  \
        container explain services.caddy.sites\n  \
        container explain processes.ready")]
    Explain {
        /// Dotted path into the spec; empty for the top level.
        #[arg(add = ArgValueCompleter::new(complete::explain_paths))]
        path: Option<String>,
    },
    /// Print the shell's completion script: commands, options, and at each TAB the
    /// containers of the state root, a container's services and `explain` paths
    /// (the script asks this binary: by its path when run by one, else `container`
    /// from PATH).
    #[command(after_help = "Examples:\n  source <(container completions bash)\n  \
        container completions bash > /etc/bash_completion.d/container\n  \
        container completions zsh > ~/.zfunc/_container")]
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// List a container's secrets: whether each file is usable, what uses it, and
    /// whether a new value is pending (never the values).
    #[command(after_help = "Examples:\n  container secret list web\n  \
        container secret list web --json | jq -r '.[] | select(.state != \"ok\") | .name'")]
    List {
        /// The container.
        #[arg(value_parser = container_name(), add = names())]
        name: Name,
        /// Print the secrets as JSON (names, states, users, paths; never values).
        #[arg(long)]
        json: bool,
    },
    /// Ask for a new value of secret KEY: `plan` shows it with the files, services
    /// and init tasks it changes, and the next `apply` makes it. Also the way out
    /// when a secret's file was lost (data tied to the old value may need it).
    #[command(after_help = "Examples:\n  container secret regenerate web mysql-shop\n  \
        container plan web.toml                # shows what the new value changes\n  \
        container apply web.toml               # makes it")]
    Regenerate {
        /// The container.
        #[arg(value_parser = container_name(), add = names())]
        name: Name,
        /// The secret's name (see `container secret list NAME`).
        #[arg(add = ArgValueCandidates::new(complete::secrets))]
        key: String,
    },
}

pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == crate::exec::attach::HELPER_ARG) {
        // `exec`'s helper re-executed from a sealed copy of us (no `container-init`).
        return crate::exec::attach::helper_main(&args[2..]);
    }
    if args.get(1).is_some_and(|a| a == SUPERVISE) {
        // Internal: `container __supervise --config-fd N` or `__supervise CONFIG` (a
        // `SupervisorConfig` as JSON, in a sealed memfd or a file).
        return match crate::exec::supervisor::ConfigSource::parse(&args[2..]) {
            Some(config) => supervise(&config),
            None => {
                errln!("usage: container {SUPERVISE} --config-fd N | container {SUPERVISE} CONFIG");
                ExitCode::from(EXIT_USAGE)
            }
        };
    }
    if args.get(1).is_some_and(|a| a == crate::exec::unpack::UNPACK_ARG) {
        // Internal: a build's `fetch` step, in the layer's mount namespace.
        return unpack(&args[2..]);
    }
    if args.get(1).is_some_and(|a| a == man::MAN_ARG) {
        // Internal: the man pages, for the package build.
        return man::main(&args[2..]);
    }
    // A TAB in a shell that sourced `container completions SHELL` (exits here).
    complete::answer_if_asked();
    let mut cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version come this way too, to stdout, exit 0.
            let code = if e.use_stderr() { ExitCode::from(EXIT_USAGE) } else { ExitCode::SUCCESS };
            e.print().ok();
            return code;
        }
    };
    // Layer paths end up in overlay mount options and in records other state roots
    // read: they must not depend on the working directory.
    if let Ok(abs) = std::path::absolute(&cli.cache) {
        cli.cache = abs;
    }
    plan::set_host_config(&cli.config);
    miette::set_hook(Box::new(|_| {
        Box::new(miette::MietteHandlerOpts::new().terminal_links(false).context_lines(1).build())
    }))
    .ok();
    // A closed terminal must not end a command that changes the host between two
    // steps (stopped but not started again); those that only read or attach keep
    // the default, so `exec`, `shell` and `logs -f` end with their terminal.
    if matches!(
        cli.command,
        Command::Apply { .. }
            | Command::Build { .. }
            | Command::Gc { .. }
            | Command::Start { .. }
            | Command::Stop { .. }
            | Command::Restart { .. }
            | Command::Destroy { .. }
    ) {
        crate::exec::process::ignore_hangup();
    }
    match cli.command {
        Command::Validate { files, format } => plan::validate(&cli.root, &files, format),
        Command::Plan { file, json } => plan::plan(&cli.root, &cli.cache, file.as_deref(), json),
        Command::Apply { file, dry_run } => run::apply(&cli.root, &cli.cache, file.as_deref(), dry_run),
        Command::Build { file } => build::build(&cli.root, &cli.cache, &file),
        Command::Images { json } => build::images(&cli.cache, json),
        Command::Gc { dry_run } => build::gc(&cli.cache, dry_run),
        Command::List { json } => run::list(&cli.root, json),
        Command::Status { name, json } => run::status(&cli.root, name.as_ref().map(|n| n.0.as_str()), json),
        Command::Start { all: true, .. } => run::start_all(&cli.root),
        Command::Start { name: Some(name), wait: true, .. } => run::start_wait(&cli.root, &name.0),
        Command::Start { name: Some(name), .. } => run::start(&cli.root, &name.0),
        Command::Stop { all: true, timeout, .. } => run::stop_all(&cli.root, timeout),
        Command::Stop { name: Some(name), timeout, .. } => run::stop(&cli.root, &name.0, timeout),
        Command::Start { name: None, .. } | Command::Stop { name: None, .. } => {
            unreachable!("clap requires NAME without --all")
        }
        Command::Enable { name } => run::set_desired(&cli.root, &name.0, crate::runtime::layout::Desired::Running),
        Command::Disable { name } => run::set_desired(&cli.root, &name.0, crate::runtime::layout::Desired::Stopped),
        Command::Restart { name, timeout } => run::restart(&cli.root, &name.0, timeout),
        Command::Exec { name, tty, workdir, env, command } => {
            run::exec(&cli.root, &name.0, command, tty, &workdir, &env)
        }
        Command::Shell { name } => run::shell(&cli.root, &name.0),
        Command::Logs { name, service, follow, tail, since, timestamps } => {
            run::logs(&cli.root, &name.0, service.as_deref(), run::LogOpts { follow, tail, since, timestamps })
        }
        Command::Destroy { name, volumes } => run::destroy(&cli.root, &name.0, volumes),
        Command::Secret { action: SecretCommand::List { name, json } } => run::secret_list(&cli.root, &name.0, json),
        Command::Secret { action: SecretCommand::Regenerate { name, key } } => {
            run::secret_regenerate(&cli.root, &name.0, &key)
        }
        Command::Schema { install: false, .. } => {
            out!("{}", crate::schema::schema_json());
            ExitCode::SUCCESS
        }
        Command::Schema { install: true, path } => match crate::schema::install(&path) {
            Ok(()) => {
                outln!("installed the schema to {}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                errln!("error: cannot install the schema to {}: {e}", path.display());
                ExitCode::FAILURE
            }
        },
        Command::Explain { path } => match crate::schema::explain(path.as_deref().unwrap_or("")) {
            Ok(text) => {
                out!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                errln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Completions { shell } => {
            // Run by a path (`./target/debug/container`): the script asks that binary.
            let completer = match args.first().map(std::path::Path::new) {
                Some(p) if p.components().count() > 1 => {
                    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).to_string_lossy().into_owned()
                }
                _ => "container".to_string(),
            };
            let mut script = Vec::new();
            match complete::script(shell, &completer, &mut script) {
                Ok(()) => {
                    out!("{}", String::from_utf8_lossy(&script));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    errln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// PID 1 of a container: read the config, then hand over to the supervisor (which
/// refuses to run once a second thread exists; nothing before this starts one).
fn supervise(config: &crate::exec::supervisor::ConfigSource) -> ExitCode {
    ExitCode::from(crate::exec::supervisor::pid1_main(config))
}

/// `container __unpack ROOT DEST STRIP`: the tarball on stdin unpacked into DEST
/// beneath the layer root ROOT (see `exec::unpack`); a line of what it did on stdout,
/// the reason on stderr and exit 1 when it refuses or fails.
fn unpack(args: &[std::ffi::OsString]) -> ExitCode {
    use crate::exec::unpack::{unpack_tarball, UnpackLimits, UNPACK_ARG};
    let usage = || {
        errln!("usage: container {UNPACK_ARG} ROOT DEST STRIP < TARBALL");
        ExitCode::from(EXIT_USAGE)
    };
    let [root, dest, strip] = args else { return usage() };
    let (Some(dest), Some(strip)) = (dest.to_str(), strip.to_str().and_then(|s| s.parse::<u32>().ok())) else {
        return usage();
    };
    let stdin = std::io::stdin().lock();
    match unpack_tarball(std::path::Path::new(root), dest, strip, stdin, UnpackLimits::default()) {
        Ok(r) => {
            outln!("unpacked {} members ({} bytes) into {dest}, {} skipped", r.members, r.bytes, r.skipped);
            ExitCode::SUCCESS
        }
        Err(e) => {
            errln!("container {UNPACK_ARG}: {e}");
            ExitCode::FAILURE
        }
    }
}
