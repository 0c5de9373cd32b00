//! `cargo bench --bench sandbox` (as root): the sandbox alone, without the CLI, state
//! files, nftables or the supervisor: spawn + release + wait of `/bin/true` as PID 1
//! of a `Host` root with a new network namespace, side by side with the floor
//! (`unshare --pid --mount --uts --ipc --net --fork chroot / /bin/true`).
//!
//! Tells how much of `container start` (see `benches/start.sh`) is the sandbox's.
//! Reports medians and the 95th percentile; asserts nothing. `N` runs (default 100).

use container::exec::sandbox::{spawn, Exit, Program, RootFs, SandboxSpec, Stdio};
use std::process::Command;
use std::time::{Duration, Instant};

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (ms(v[v.len() / 2]), ms(v[(v.len() * 95 / 100).min(v.len() - 1)]))
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("sandbox bench skipped: needs root");
        return;
    }
    let n: usize = std::env::var("N").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    let floor = || {
        let st = Command::new("unshare")
            .args(["--pid", "--mount", "--uts", "--ipc", "--net", "--fork", "chroot", "/", "/bin/true"])
            .status()
            .expect("run unshare");
        assert!(st.success(), "floor failed: {st}");
    };
    let sandbox = |program: Program| {
        let spec = SandboxSpec::new("bench", RootFs::Host, program);
        move || {
            let mut child = spawn(&spec, Stdio::inherit()).expect("spawn").release().expect("release");
            assert_eq!(child.wait().expect("wait"), Exit::Code(0));
        }
    };
    type Case<'a> = (&'a str, Box<dyn Fn()>);
    let cases: Vec<Case> = vec![
        ("floor: unshare … chroot / /bin/true", Box::new(floor)),
        ("sandbox: Program::Path /bin/true", Box::new(sandbox(Program::Path(vec!["/bin/true".into()])))),
        (
            "sandbox: Program::Exe /bin/true",
            Box::new(sandbox(Program::Exe { path: "/bin/true".into(), argv: vec!["true".into()] })),
        ),
    ];
    let mut samples: Vec<Vec<Duration>> = cases.iter().map(|_| Vec::with_capacity(n)).collect();
    for (_, f) in &cases {
        f(); // warm-up
    }
    // Interleaved, so drift in the machine's load hits every case alike.
    for _ in 0..n {
        for (i, (_, f)) in cases.iter().enumerate() {
            let t = Instant::now();
            f();
            samples[i].push(t.elapsed());
        }
    }
    let (floor_med, _) = stats(samples[0].clone());
    println!("{:<40} {:>9} {:>9} {:>8}", format!("sandbox bench, N={n}"), "median ms", "p95 ms", "÷ floor");
    for ((name, _), s) in cases.iter().zip(samples) {
        let (med, p95) = stats(s);
        println!("{name:<40} {med:>9.2} {p95:>9.2} {:>7.2}x", med / floor_med);
    }
}
