//! `cargo bench --bench plan`: time to plan each shipped spec (DESIGN target < 10 ms,
//! Rhai included), in-process and as a whole `container plan` process.
//!
//! Reports medians and the 95th percentile; it asserts nothing (timings belong in
//! benchmarks, not tests). Figures go into the closing note of the issue.

use container::exec::beneath::{read_named, SpecFolder};
use container::plan::{self, pool::AddressPool, render, Env};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn shipped() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in ["specs", "examples"] {
        for e in std::fs::read_dir(root.join(dir)).into_iter().flatten().flatten() {
            let p = e.path();
            if matches!(p.extension().and_then(|x| x.to_str()), Some("toml" | "yaml" | "yml")) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (ms(v[v.len() / 2]), ms(v[(v.len() * 95 / 100).min(v.len() - 1)]))
}

fn main() {
    let cli = env!("CARGO_BIN_EXE_container");
    let root = tempfile::tempdir().expect("temp dir");
    println!("{:<34} {:>12} {:>12} {:>14} {:>14}", "spec", "lib median", "lib p95", "cli median", "cli p95");
    let mut worst: f64 = 0.0;
    for f in shipped() {
        let name = f.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(&f).display().to_string();
        let mut lib = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            let loaded = container::spec::load_file(&f, read_named).expect("shipped specs load");
            let reader = SpecFolder(loaded.dir.clone());
            let p = plan::compile(
                &loaded,
                &Env { pool: &AddressPool::default(), reader: &reader, host: &Default::default() },
            )
            .expect("shipped specs compile");
            let changes = plan::diff(None, &p);
            std::hint::black_box(render::human(&changes, false));
            lib.push(t.elapsed());
        }
        let mut proc_times = Vec::new();
        for _ in 0..30 {
            let t = Instant::now();
            let out = Command::new(cli)
                .env("CONTAINER_ROOT", root.path())
                .arg("plan")
                .arg(&f)
                .output()
                .expect("run container");
            proc_times.push(t.elapsed());
            assert!(out.status.code() == Some(2), "{name}: plan failed");
        }
        let (lm, lp) = stats(lib);
        let (cm, cp) = stats(proc_times);
        worst = worst.max(cm);
        println!("{name:<34} {lm:>9.3} ms {lp:>9.3} ms {cm:>11.3} ms {cp:>11.3} ms");
    }
    println!("\nworst CLI median: {worst:.3} ms (target < 10 ms)");
}
