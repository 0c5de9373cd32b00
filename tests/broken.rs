//! The corpus of broken specs: every one exits 1, names the right line (and column)
//! and says what is wrong, without panicking, hanging or writing anything.
//!
//! Each file in tests/broken/ starts with `# expect: LINE:COL: message` (COL and
//! message may be empty). Generated cases (empty, binary, huge, deep, alias bomb)
//! are built in code below.

mod support;
use std::path::{Path, PathBuf};

/// The message words of a report, whatever its line wrapping (the width the report
/// is wrapped to depends on how long the temp dir's path is).
fn flat(s: &str) -> String {
    s.split_whitespace().filter(|w| *w != "│").collect::<Vec<_>>().join(" ")
}

struct Outcome {
    code: Option<i32>,
    stderr: String,
}

fn run(args: &[&str], file: &Path) -> Outcome {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    let out =
        support::isolated(&state).timeout(std::time::Duration::from_secs(20)).args(args).arg(file).output().unwrap();
    assert!(!state.exists(), "a broken spec must not write anything under the root");
    let mut stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if stderr.len() > 4000 {
        // Never drown a failure report in a megabyte of snippet.
        let cut = (0..=4000).rev().find(|i| stderr.is_char_boundary(*i)).unwrap_or(0);
        stderr.truncate(cut);
        stderr.push_str("…(truncated)");
    }
    Outcome { code: out.status.code(), stderr }
}

fn check(file: &Path, expect: &str) {
    for args in [&["validate"][..], &["plan"][..]] {
        let o = run(args, file);
        let shown = file.display().to_string();
        assert_eq!(o.code, Some(1), "{shown} ({args:?}): expected exit 1\n{}", o.stderr);
        assert!(!o.stderr.contains("panicked"), "{shown} panicked:\n{}", o.stderr);
        let (loc, msg) = match expect.splitn(3, ':').collect::<Vec<_>>().as_slice() {
            [l, c, m] if !c.trim().is_empty() => (format!("{shown}:{}:{}", l.trim(), c.trim()), m.trim().to_string()),
            [l, _, m] => (format!("{shown}:{}:", l.trim()), m.trim().to_string()),
            [l, _] | [l] => (format!("{shown}:{}:", l.trim()), String::new()),
            _ => unreachable!(),
        };
        assert!(o.stderr.contains(&loc), "{shown}: expected location {loc} in:\n{}", o.stderr);
        assert!(flat(&o.stderr).contains(&flat(&msg)), "{shown}: expected message `{msg}` in:\n{}", o.stderr);
    }
}

#[test]
fn corpus_files_report_line_and_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 40, "the corpus needs at least 40 specs, has {}", files.len());
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect:"))
            .unwrap_or_else(|| panic!("{} lacks `# expect:`", f.display()));
        // Run relative to the manifest so the location reads tests/broken/NAME.
        let rel = f.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
        std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
        check(rel, expect.trim());
    }
}

#[test]
fn all_problems_of_a_file_are_reported_at_once() {
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
    let o = run(&["validate"], Path::new("tests/broken/41-many-problems.toml"));
    let words = flat(&o.stderr);
    assert!(words.contains("3 problems found"), "{}", o.stderr);
    for m in ["unknown key `hostnme`", "invalid IPv4 address `300.1.1.1`", "invalid size `12X`"] {
        assert!(words.contains(m), "missing `{m}` in:\n{}", o.stderr);
    }
    assert!(words.contains("did you mean `hostname`?"), "{}", o.stderr);
}

fn generated(name: &str, bytes: &[u8], expect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join(name);
    std::fs::write(&f, bytes).unwrap();
    for args in [&["validate"][..], &["plan"][..]] {
        let o = run(args, &f);
        assert_eq!(o.code, Some(1), "{name}: {}", o.stderr);
        assert!(!o.stderr.contains("panicked"), "{name}: {}", o.stderr);
        assert!(flat(&o.stderr).contains(&flat(expect)), "{name}: expected `{expect}` in:\n{}", o.stderr);
    }
}

#[test]
fn empty_and_blank_files() {
    generated("empty.toml", b"", "the spec is empty");
    generated("blank.yaml", b"\n  \n# only a comment\n", "");
}

#[test]
fn binary_garbage() {
    let mut bytes = b"name = \"web\"\n".to_vec();
    bytes.extend((0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 0x80));
    generated("garbage.toml", &bytes, "not UTF-8");
    generated("garbage.yaml", &bytes, "not UTF-8");
}

#[test]
fn yaml_alias_bomb() {
    let mut s = String::from("name: web\nvars:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..12 {
        let prev = if i == 0 { "a".to_string() } else { format!("l{}", i - 1) };
        let refs = vec![format!("*{prev}"); 10].join(", ");
        s.push_str(&format!("  l{i}: &l{i} [{refs}]\n"));
    }
    generated("bomb.yaml", s.as_bytes(), "alias bomb");
}

#[test]
fn twenty_megabyte_value() {
    let big = "x".repeat(20 << 20);
    generated("big.toml", format!("name = \"web\"\npackages = [\"{big}\"]\n").as_bytes(), "a spec may have at most");
    generated("big.yaml", format!("name: web\npackages: [\"{big}\"]\n").as_bytes(), "a spec may have at most");
}

#[test]
fn a_value_just_under_the_size_limit_is_refused_for_its_content() {
    let big = "x".repeat(3 << 20);
    generated("large.toml", format!("name = \"web\"\npackages = [\"{big}\"]\n").as_bytes(), "invalid package name");
}

#[test]
fn hundred_thousand_levels_of_nesting() {
    let open = "[".repeat(100_000);
    let close = "]".repeat(100_000);
    generated("deep.toml", format!("name = \"web\"\nvars = {{ x = {open}{close} }}\n").as_bytes(), "");
    generated("deep.yaml", format!("name: web\nvars: {{ x: {open}{close} }}\n").as_bytes(), "nesting deeper than");
    let maps = "{a: ".repeat(100_000) + "}".repeat(100_000).as_str();
    generated("deep-map.yaml", format!("name: web\nvars: {maps}\n").as_bytes(), "nesting deeper than");
}
