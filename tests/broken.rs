//! The corpus of broken specs: every one exits 1, names the right line (and column)
//! and says what is wrong, without panicking, hanging or writing anything.
//!
//! Each file in tests/broken/ starts with `# expect: LINE:COL: message` (COL and
//! message may be empty); `# expect-also: text` lines that follow name more text the
//! report must hold (a hook script's `FILE:LINE:COL`). tests/broken/hooks/ holds the
//! hook scripts the `*-hook-*` specs load: each returns a plan with one bad value,
//! which must be refused at plan time, at the hook, before anything is written. Generated cases (empty, binary, huge, deep, alias bomb)
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
    let left: Vec<_> = std::fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "a broken spec must leave the root empty, found {left:?}");
    let mut stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if stderr.len() > 4000 {
        // Never drown a failure report in a megabyte of snippet.
        let cut = (0..=4000).rev().find(|i| stderr.is_char_boundary(*i)).unwrap_or(0);
        stderr.truncate(cut);
        stderr.push_str("…(truncated)");
    }
    Outcome { code: out.status.code(), stderr }
}

fn check(file: &Path, expect: &str, also: &[&str]) {
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
        for a in also {
            assert!(o.stderr.contains(a), "{shown} ({args:?}): expected `{a}` in:\n{}", o.stderr);
        }
    }
}

#[test]
fn corpus_files_report_line_and_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken");
    // Folders (hooks/) hold what the specs load, not specs.
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
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
        let also: Vec<&str> =
            text.lines().skip(1).map_while(|l| l.strip_prefix("# expect-also:")).map(str::trim).collect();
        check(rel, expect.trim(), &also);
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
    // A type error does not hide a check of the rest of the file; a check of the
    // same table as a bad value does not run (it could be a consequence).
    let o = run(&["validate"], Path::new("tests/broken/61-type-and-semantic-problems.toml"));
    let words = flat(&o.stderr);
    assert!(words.contains("2 problems found"), "{}", o.stderr);
    for m in ["invalid IPv4 address `300.1.1.1`", "pids must be at least 1"] {
        assert!(words.contains(m), "missing `{m}` in:\n{}", o.stderr);
    }
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

// Files that are not what they claim: a spec, or a file a spec names (`files.source`,
// a hook's `script`, a hook's `read_file`), that is a device, a FIFO, a folder, or a
// symlink out of the spec's folder. Each must be refused with exit 1 at once (a
// reader of /dev/zero grows without end, a FIFO blocks forever: the child is killed
// at the deadline, so a hang fails rather than blocks), naming the file and what it
// is, and nothing outside the spec's folder may reach the output. Symlinks cannot
// live in git, so these cases are made in a temp dir.

const DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);
/// Well under the deadline: refusing takes milliseconds, even on a busy machine.
const QUICK: std::time::Duration = std::time::Duration::from_secs(5);
const SECRET: &str = "host-secret-7f3a9c1e";

struct Special {
    dir: tempfile::TempDir,
    /// A folder next to the spec's, with a file the spec must never reach.
    _outside: tempfile::TempDir,
    secret: PathBuf,
}

fn special() -> Special {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    Special { dir, _outside: outside, secret }
}

impl Special {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        std::fs::write(self.path(name), text).unwrap();
        self.path(name)
    }
    fn link(&self, name: &str, target: &Path) {
        std::os::unix::fs::symlink(target, self.path(name)).unwrap();
    }
    fn fifo(&self, name: &str) {
        nix::unistd::mkfifo(&self.path(name), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    }
}

/// `validate` and `plan` of `spec`: exit 1 within [`QUICK`], every `want` (and the
/// location `FILE:LINE:` when given) in the error, the secret nowhere.
fn refused(spec: &Path, line: Option<u32>, want: &[&str]) {
    for args in [&["validate"][..], &["plan"][..]] {
        let root = tempfile::tempdir().unwrap();
        let state = root.path().join("state");
        let start = std::time::Instant::now();
        let out = support::isolated(&state).timeout(DEADLINE).args(args).arg(spec).output().unwrap();
        let took = start.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let shown = format!("{} ({args:?})", spec.display());
        assert!(took < QUICK, "{shown}: took {took:?} (hung or read without bound)\n{stderr}");
        assert_eq!(out.status.code(), Some(1), "{shown}: expected exit 1\n{stderr}");
        assert!(!stderr.contains("panicked"), "{shown} panicked:\n{stderr}");
        let words = flat(&stderr);
        for w in want {
            assert!(words.contains(&flat(w)), "{shown}: expected `{w}` in:\n{stderr}");
        }
        if let Some(l) = line {
            let loc = format!("{}:{l}:", spec.display());
            assert!(stderr.contains(&loc), "{shown}: expected location {loc} in:\n{stderr}");
        }
        assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET), "{shown}: the secret leaked:\n{stdout}{stderr}");
        assert!(!state.exists(), "{shown}: a refused spec must not write anything under the root");
    }
}

#[test]
fn a_spec_that_is_a_symlink_to_dev_zero_is_refused_at_once() {
    let s = special();
    s.link("zero.toml", Path::new("/dev/zero"));
    refused(&s.path("zero.toml"), None, &["zero.toml", "not a regular file (a device node)"]);
}

#[test]
fn a_spec_that_is_a_fifo_is_refused_at_once() {
    let s = special();
    s.fifo("fifo.toml");
    refused(&s.path("fifo.toml"), None, &["fifo.toml", "not a regular file (a FIFO)"]);
}

#[test]
fn a_spec_that_is_a_folder_is_refused() {
    let s = special();
    std::fs::create_dir(s.path("dir.toml")).unwrap();
    refused(&s.path("dir.toml"), None, &["dir.toml", "not a regular file (a folder)"]);
}

fn with_source(s: &Special, source: &str) -> PathBuf {
    s.write("web.toml", &format!("name = \"web\"\n[[files]]\npath = \"/etc/motd\"\nsource = \"{source}\"\n"))
}

#[test]
fn a_files_source_that_is_a_symlink_to_dev_zero_is_refused_at_once() {
    let s = special();
    s.link("zero", Path::new("/dev/zero"));
    let spec = with_source(&s, "zero");
    refused(&spec, Some(4), &["zero", "refused", "a regular file inside the spec's folder"]);
}

#[test]
fn a_files_source_that_is_a_fifo_is_refused_at_once() {
    let s = special();
    s.fifo("fifo");
    let spec = with_source(&s, "fifo");
    refused(&spec, Some(4), &["fifo", "not a regular file (a FIFO)", "a regular file inside the spec's folder"]);
}

#[test]
fn a_files_source_that_is_a_folder_is_refused() {
    let s = special();
    std::fs::create_dir(s.path("sub")).unwrap();
    let spec = with_source(&s, "sub");
    refused(&spec, Some(4), &["sub", "not a regular file (a folder)"]);
}

#[test]
fn a_files_source_that_links_out_of_the_spec_folder_is_refused() {
    let s = special();
    s.link("motd", &s.secret);
    refused(&with_source(&s, "motd"), Some(4), &["motd", "outside", "a regular file inside the spec's folder"]);
    // A folder on the way that leads out is refused the same.
    s.link("up", s.secret.parent().unwrap());
    refused(&with_source(&s, "up/secret"), Some(4), &["up/secret", "outside"]);
    // So is a relative symlink that climbs out.
    let rel = Path::new("..").join(s.secret.parent().unwrap().file_name().unwrap()).join("secret");
    s.link("climb", &rel);
    refused(&with_source(&s, "climb"), Some(4), &["climb", "outside"]);
}

#[test]
fn a_files_source_symlink_that_stays_inside_the_folder_is_followed() {
    let s = special();
    std::fs::create_dir(s.path("v2")).unwrap();
    s.write("v2/motd", "hello from v2\n");
    s.link("current", Path::new("v2"));
    let spec = with_source(&s, "current/motd");
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    let out = support::isolated(&state).timeout(DEADLINE).arg("validate").arg(&spec).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // `plan` exits 2 for "there are changes" and shows the file's content.
    let out = support::isolated(&state).timeout(DEADLINE).arg("plan").arg(&spec).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello from v2"), "{out:?}");
}

fn with_hook_script(s: &Special, script: &str) -> PathBuf {
    s.write("web.toml", &format!("name = \"web\"\n[[hooks]]\nscript = \"{script}\"\n"))
}

#[test]
fn a_hook_script_that_is_a_device_fifo_or_link_out_is_refused_at_once() {
    let s = special();
    s.link("zero.rhai", Path::new("/dev/zero"));
    refused(&with_hook_script(&s, "zero.rhai"), Some(3), &["zero.rhai", "refused"]);
    s.fifo("fifo.rhai");
    refused(&with_hook_script(&s, "fifo.rhai"), Some(3), &["fifo.rhai", "not a regular file (a FIFO)"]);
    std::fs::write(&s.secret, format!("// {SECRET}\nfn on_plan(p) {{ p }}\n")).unwrap();
    s.link("out.rhai", &s.secret);
    refused(&with_hook_script(&s, "out.rhai"), Some(3), &["out.rhai", "outside"]);
}

fn with_read_file(s: &Special, file: &str) -> PathBuf {
    s.write(
        "web.toml",
        &format!(
            "name = \"web\"\n[[hooks]]\ninline = \"\"\"\nfn on_plan(p) {{\n    p.add_file(\"/etc/x\", read_file(\"{file}\"));\n    p\n}}\n\"\"\"\n"
        ),
    )
}

#[test]
fn a_hook_read_file_of_a_device_fifo_or_link_out_is_refused_at_once() {
    let s = special();
    s.link("zero", Path::new("/dev/zero"));
    refused(&with_read_file(&s, "zero"), None, &["zero", "refused"]);
    s.fifo("fifo");
    refused(&with_read_file(&s, "fifo"), None, &["fifo", "not a regular file (a FIFO)"]);
    s.link("out", &s.secret);
    refused(&with_read_file(&s, "out"), None, &["out", "outside"]);
}

/// `validate --format short|json`: every problem of the file, one per line in the
/// `FILE:LINE:COL: error: MESSAGE` form or one JSON document, exit code unchanged.
#[test]
fn validate_formats_list_every_problem() {
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
    let file = "tests/broken/59-formats-many-problems.toml";
    let want = [
        (2, 8, "invalid name `Web_1`"),
        (3, 1, "unknown key `hostnme`"),
        (5, 1, "unknown key `ipv5`"),
        (8, 17, "invalid port `70000`"),
        (11, 8, "invalid mode `0999`"),
    ];
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    let go = |format: &str| {
        let out = support::isolated(&state)
            .timeout(std::time::Duration::from_secs(20))
            .args(["validate", "--format", format, file])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "validate --format {format}");
        String::from_utf8(out.stdout).unwrap()
    };
    let short = go("short");
    let lines: Vec<&str> = short.lines().collect();
    assert_eq!(lines.len(), want.len(), "one line per problem:\n{short}");
    for (l, (line, col, msg)) in lines.iter().zip(want) {
        assert!(l.starts_with(&format!("{file}:{line}:{col}: error: {msg}")), "{l}");
    }
    let json: serde_json::Value = serde_json::from_str(&go("json")).unwrap();
    assert_eq!(json["ok"], false);
    let problems = json["problems"].as_array().unwrap();
    assert_eq!(problems.len(), want.len(), "{json}");
    for (p, (line, col, msg)) in problems.iter().zip(want) {
        assert_eq!((p["file"].as_str(), p["line"].as_u64(), p["column"].as_u64()), (Some(file), Some(line), Some(col)));
        assert!(p["message"].as_str().unwrap().starts_with(msg), "{p}");
    }
    assert_eq!(problems[1]["help"], "did you mean `hostname`?");
    assert!(!state.exists(), "validate wrote under the root");
}
