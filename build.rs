//! Build script: links `container-init`, the PID 1 of every container, as a static
//! PIE on Linux with glibc, so that a plain `cargo build` gives the small PID 1 (see
//! `src/bin/container-init.rs`) and `container` stays dynamically linked.
//!
//! Why a trick: `-C target-feature=+crt-static` is what makes rustc link glibc
//! statically, but Cargo can only set it for a whole build (every binary, the tests,
//! and the proc-macros, which cannot be static). A build script can only add
//! linker arguments to one binary (`cargo:rustc-link-arg-bin`), and rustc still asks
//! for the shared libraries (`-Wl,-Bdynamic -lgcc_s -lc …`): `-static-pie` alone
//! links them dynamically without an interpreter, a binary that crashes at its first
//! instruction. So `container-init` also gets a library folder of its own, searched
//! before the system's, where each library rustc asks for is a linker script
//! (`libc.so`, `libgcc_s.so`, …) naming the static archive instead (`libc.a`,
//! `libgcc_eh.a`, …): what rustc links for `+crt-static`.
//!
//! Static glibc is safe here because PID 1 needs nothing glibc loads at run time:
//! the supervisor reads the container's /etc/passwd and /etc/group itself (no NSS,
//! no getpwnam(3)) and its TCP probes connect to loopback addresses (no
//! getaddrinfo(3)). It also frees PID 1 from the container's own ld.so and libc,
//! which a dynamic binary exec'd inside the container's root would load.
//!
//! When the static archives are missing (a distribution that ships them apart,
//! such as glibc-static), or the target is not Linux with glibc, `container-init` is
//! linked like every other binary, and the build says so in a warning. A build that
//! already sets `+crt-static` needs nothing from here.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The libraries rustc links for the gnu targets without `+crt-static`, each with the
/// static archives that replace it (what it links with `+crt-static`).
const SHADOWS: &[(&str, &[&str])] = &[
    ("c", &["libc.a", "libgcc_eh.a", "libgcc.a"]),
    ("gcc_s", &["libgcc_eh.a", "libgcc.a"]),
    ("m", &["libm.a"]),
    // Merged into libc since glibc 2.34, which keeps them as empty archives.
    ("pthread", &["libpthread.a"]),
    ("dl", &["libdl.a"]),
    ("rt", &["librt.a"]),
    ("util", &["libutil.a"]),
];

/// Archives that glibc 2.34 and later may leave out: their shadow is then empty.
const MERGED: &[&str] = &["libpthread.a", "libdl.a", "librt.a", "libutil.a"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let target_is = |var: &str, value: &str| env::var(var).is_ok_and(|v| v == value);
    if !target_is("CARGO_CFG_TARGET_OS", "linux") || !target_is("CARGO_CFG_TARGET_ENV", "gnu") {
        return; // musl is static already; elsewhere there are no containers.
    }
    if env::var("CARGO_CFG_TARGET_FEATURE").is_ok_and(|f| f.split(',').any(|f| f == "crt-static")) {
        return; // the whole build is static already
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("static-init");
    match shadow_libraries(&out) {
        Ok(()) => {
            println!("cargo:rustc-link-arg-bin=container-init=-L{}", out.display());
            println!("cargo:rustc-link-arg-bin=container-init=-static-pie");
        }
        Err(why) => println!(
            "cargo:warning=container-init is linked dynamically ({why}); install glibc's static \
             libraries (Debian: libc6-dev) for the small static PID 1"
        ),
    }
}

/// Writes the linker scripts into `dir`, each naming the archives' full paths as the
/// linker rustc uses finds them.
fn shadow_libraries(dir: &Path) -> Result<(), String> {
    let linker = env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".into());
    let find = |file: &str| -> Result<Option<PathBuf>, String> {
        let out = Command::new(&linker)
            .arg(format!("-print-file-name={file}"))
            .output()
            .map_err(|e| format!("cannot run {linker}: {e}"))?;
        // The linker echoes the bare name back when it finds no such file.
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Ok((out.status.success() && path.is_absolute() && path.is_file()).then_some(path))
    };
    if find("rcrt1.o")?.is_none() {
        return Err("no rcrt1.o, the start file of a static PIE".into());
    }
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (lib, archives) in SHADOWS {
        let mut paths = Vec::new();
        for archive in *archives {
            match find(archive)? {
                Some(path) => paths.push(format!("\"{}\"", path.display())),
                None if MERGED.contains(archive) => {}
                None => return Err(format!("no {archive}")),
            }
        }
        // An empty GROUP is a syntax error: a merged library's script is a comment.
        let script = if paths.is_empty() {
            format!("/* {lib}: part of libc */\n")
        } else {
            format!("GROUP ( {} )\n", paths.join(" "))
        };
        let file = dir.join(format!("lib{lib}.so"));
        fs::write(&file, script).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    Ok(())
}
