//! `container-init --config-fd 3` (or `container-init CONFIG`): the PID 1 of every
//! container, and nothing else — except
//! that `container-init __exec-helper …` is the helper of `container exec` after it
//! re-executed itself (see `exec::attach`), before it becomes the command, and
//! `container-init __keeper EXIT_FILE` is the keeper that waits for a container's
//! PID 1 and records how it ended (see `exec::keeper`).
//!
//! Does exactly what `container __supervise …` does (that entry point stays as a
//! fallback): leave the caller's session, read the [`SupervisorConfig`] JSON from the
//! sealed memfd at fd 3 (what the runtime passes; a new one comes with each
//! `reconfigure` from the host) or from the file CONFIG (a supervisor run by hand),
//! and run the supervisor on it until it is told to stop.
//!
//! Why a separate binary: PID 1 stays resident for the container's whole life, so
//! it must be small. This one links only the supervisor (no CLI parser, no
//! diagnostics renderer, no spec or plan code, no Rhai): the linker drops every
//! part of the library that `supervisor::run` does not reach, and the build script
//! (`build.rs`) links it statically, so it maps no ld.so or libc. The sandbox execs it
//! through a read-only detached bind mount (see `Program::Exe`), never by path.
//!
//! [`SupervisorConfig`]: container::exec::supervisor::SupervisorConfig

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let first = args.next();
    if first.as_ref().is_some_and(|a| a == container::exec::keeper::KEEPER_ARG) {
        // The keeper of a container's PID 1 (see `exec::keeper`).
        let Some(exit_file) = args.next() else { return ExitCode::from(2) };
        return ExitCode::from(container::exec::keeper::keeper_main(std::path::Path::new(&exit_file)));
    }
    if first.is_some_and(|a| a == container::exec::attach::HELPER_ARG) {
        // `container exec`'s helper, re-executed from this small read-only binary
        // so that nothing in the container ever runs as a copy of `container`.
        return container::exec::attach::helper_main(&args.collect::<Vec<_>>());
    }
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let Some(config) = container::exec::supervisor::ConfigSource::parse(&args) else {
        // No eprintln!: it panics when stderr cannot be written, and PID 1 aborts on panic.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"usage: container-init --config-fd N | container-init CONFIG\n",
        );
        return ExitCode::from(2);
    };
    // Exec'd from an fd, the kernel names the process after the fd ("3"); give it
    // its own name for ps and /proc/1/comm.
    // SAFETY: PR_SET_NAME reads a NUL-terminated string.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"container-init".as_ptr());
    }
    ExitCode::from(container::exec::supervisor::pid1_main(&config))
}
