//! The crate's vocabulary rules, checked on the source text (unit tier: reads `src/`,
//! needs nothing else).
//!
//! - One word, one thing: no two public types (`struct`, `enum`, `type`, `trait`,
//!   `union`, at any `pub(…)` visibility) anywhere under `src/` share a name. A second
//!   `Config` or `State` is renamed by its role instead.
//! - The top-level modules form a DAG (docs/ARCHITECTURE.md, "Layers"): an edge
//!   `a → b` is any `crate::b` path in the non-test code of `a`. Test code (a
//!   `#[cfg(test)]` item, or a file declared by `#[cfg(test)] mod x;`) may reach
//!   upwards, e.g. a module's tests compile a whole plan.
//! - `unsafe` and raw system calls (`libc::` functions and types, `nix::`) appear only
//!   in `src/exec/` and `src/bin/`; elsewhere a `libc::` constant (e.g. `O_NOFOLLOW`
//!   for `OpenOptions`) is the most allowed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn rel(p: &Path) -> String {
    p.strip_prefix(src()).unwrap_or(p).display().to_string()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `pub`, `pub(crate)`, `pub(super)`, `pub(in …)` followed by a type keyword: the name.
fn public_type(line: &str) -> Option<(&'static str, String)> {
    let rest = line.trim_start().strip_prefix("pub")?;
    let rest = if let Some(r) = rest.strip_prefix('(') { r.split_once(')')?.1 } else { rest };
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let mut words = rest.split_whitespace();
    let mut kw = words.next()?;
    if kw == "unsafe" {
        kw = words.next()?;
    }
    let kind = ["struct", "enum", "type", "trait", "union"].into_iter().find(|k| *k == kw)?;
    let name: String = words.next()?.chars().take_while(|c| is_ident(*c)).collect();
    (!name.is_empty()).then_some((kind, name))
}

#[test]
fn public_type_names_are_unique() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
        for (i, line) in text.lines().enumerate() {
            if let Some((kind, name)) = public_type(line) {
                seen.entry(name).or_default().push(format!("{}:{} ({kind})", rel(f), i + 1));
            }
        }
    }
    assert!(seen.len() > 100, "the scan found only {} public types: is it reading src/?", seen.len());
    let clashes: Vec<String> =
        seen.iter().filter(|(_, at)| at.len() > 1).map(|(name, at)| format!("{name}: {}", at.join(", "))).collect();
    assert!(clashes.is_empty(), "public types sharing a name (rename them by their role):\n{}", clashes.join("\n"));
}

#[test]
fn the_scanner_sees_every_visibility() {
    assert_eq!(public_type("pub struct Plan {"), Some(("struct", "Plan".into())));
    assert_eq!(public_type("    pub(crate) enum Kind {"), Some(("enum", "Kind".into())));
    assert_eq!(public_type("pub(in crate::exec) type Fd = i32;"), Some(("type", "Fd".into())));
    assert_eq!(public_type("pub unsafe trait Raw<T> {"), Some(("trait", "Raw".into())));
    assert_eq!(public_type("pub fn struct_like() {"), None);
    assert_eq!(public_type("struct Private;"), None);
    assert_eq!(public_type("pub structure: u32,"), None);
}

/// The code of a file without its test items: a `#[cfg(test)]` item is dropped up to
/// the `}` at its own indentation (rustfmt's layout). Files declared by
/// `#[cfg(test)] mod name;` are added to `test_files`.
fn without_tests(file: &Path, text: &str, test_files: &mut BTreeSet<PathBuf>) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim() != "#[cfg(test)]" {
            out.push_str(line);
            out.push('\n');
            i += 1;
            continue;
        }
        let indent = &line[..line.len() - line.trim_start().len()];
        i += 1;
        while i < lines.len() && lines[i].trim_start().starts_with("#[") {
            i += 1;
        }
        let Some(item) = lines.get(i) else { break };
        let item = item.trim();
        if let Some(name) = item.strip_prefix("mod ").and_then(|m| m.strip_suffix(';')) {
            let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            let dir = file.parent().unwrap_or(file);
            let dir = if stem == "mod" || stem == "lib" || stem == "main" { dir.to_path_buf() } else { dir.join(stem) };
            test_files.insert(dir.join(format!("{name}.rs")));
            test_files.insert(dir.join(name).join("mod.rs"));
            i += 1;
        } else if item.ends_with(';') || (item.ends_with('}') && item.matches('{').count() == item.matches('}').count())
        {
            i += 1;
        } else {
            let close = format!("{indent}}}");
            while i < lines.len() && lines[i] != close {
                i += 1;
            }
            i += 1;
        }
    }
    out
}

/// Top-level modules named by `crate::x` paths (and `crate::{x, y::z}` groups) in code.
fn crate_refs(code: &str) -> Vec<(usize, String)> {
    let mut refs = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().next_back();
            let after = &rest[at + "crate::".len()..];
            rest = after;
            if before.is_some_and(|c| is_ident(c) || c == '$') {
                continue;
            }
            if let Some(group) = after.strip_prefix('{') {
                let group = group.split('}').next().unwrap_or_default();
                for part in group.split(',') {
                    let name: String = part.trim().chars().take_while(|c| is_ident(*c)).collect();
                    if !name.is_empty() && name != "self" {
                        refs.push((n + 1, name));
                    }
                }
            } else {
                let name: String = after.chars().take_while(|c| is_ident(*c)).collect();
                if !name.is_empty() {
                    refs.push((n + 1, name));
                }
            }
        }
    }
    refs
}

/// Top-level module → (module it uses → first place it does).
fn module_graph() -> BTreeMap<String, BTreeMap<String, String>> {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let top = |f: &Path| -> Option<String> {
        let first = f.strip_prefix(&root).ok()?.components().next()?.as_os_str().to_str()?.to_string();
        let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
        // The crate root and the binaries sit above every module.
        (!["lib", "main", "bin"].contains(&name.as_str())).then_some(name)
    };
    let mut test_files = BTreeSet::new();
    let mut code = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
        code.push((f.clone(), without_tests(f, &text, &mut test_files)));
    }
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (f, code) in &code {
        let Some(from) = top(f) else { continue };
        let edges = graph.entry(from.clone()).or_default();
        if test_files.contains(f) {
            continue;
        }
        for (line, to) in crate_refs(code) {
            if to != from {
                edges.entry(to).or_insert_with(|| format!("{}:{line}", rel(f)));
            }
        }
    }
    graph
}

/// One cycle of the graph, as `a → b (where) → … → a`, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Option<String> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<String> {
        if let Some(pos) = stack.iter().position(|n| n == node) {
            let mut path = stack[pos..].to_vec();
            path.push(node.to_string());
            let steps: Vec<String> =
                path.windows(2).map(|w| format!("{} → {} ({})", w[0], w[1], graph[&w[0]][&w[1]])).collect();
            return Some(steps.join("\n"));
        }
        if !done.insert(node.to_string()) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(|e| e.keys()) {
            if let Some(c) = visit(next, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn top_level_modules_form_a_dag() {
    let graph = module_graph();
    for m in ["spec", "plan", "modules", "script", "runtime", "exec", "cli"] {
        assert!(graph.contains_key(m), "module {m} not found in src/: {:?}", graph.keys());
    }
    assert!(graph["cli"].contains_key("runtime"), "the scan misses `crate::` paths: {:?}", graph["cli"]);
    if let Some(cycle) = find_cycle(&graph) {
        panic!("the top-level modules import each other in a circle:\n{cycle}");
    }
}

#[test]
fn the_cycle_check_finds_cycles() {
    let mut g: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut edge = |a: &str, b: &str| {
        g.entry(a.into()).or_default().insert(b.into(), "x.rs:1".into());
        g.entry(b.into()).or_default();
    };
    edge("cli", "plan");
    edge("plan", "spec");
    assert_eq!(find_cycle(&g), None);
    g.get_mut("spec").expect("spec").insert("cli".into(), "spec.rs:3".into());
    assert_eq!(find_cycle(&g).as_deref(), Some("cli → plan (x.rs:1)\nplan → spec (x.rs:1)\nspec → cli (spec.rs:3)"));
}

#[test]
fn the_reference_scanner_skips_tests_comments_and_macros() {
    let code = "use crate::plan::Plan;\nuse crate::{diag, spec::Spec};\n// crate::exec\nlet x = $crate::y;\n\
                #[cfg(test)]\nmod tests {\n    use crate::cli;\n}\nfn f() -> crate::runtime::X {}\n";
    let mut test_files = BTreeSet::new();
    let code = without_tests(Path::new("src/a/mod.rs"), code, &mut test_files);
    let names: Vec<String> = crate_refs(&code).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["plan", "diag", "spec", "runtime"]);
    let mut test_files = BTreeSet::new();
    without_tests(Path::new("src/script/mod.rs"), "#[cfg(test)]\nmod tests;\n", &mut test_files);
    assert!(test_files.contains(Path::new("src/script/tests.rs")), "{test_files:?}");
}

/// Places outside `exec` and the binaries that use `unsafe` or call the kernel raw.
fn raw_outside_exec() -> Vec<String> {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut found = Vec::new();
    for f in files.iter().filter(|f| !f.starts_with(root.join("exec")) && !f.starts_with(root.join("bin"))) {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for what in raw_uses(code) {
                found.push(format!("{}:{}: {what}", rel(f), i + 1));
            }
        }
    }
    found
}

/// `unsafe` blocks, fns, impls and traits; `libc::` items that are not constants; `nix::`.
fn raw_uses(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let words: Vec<&str> = code.split(|c: char| !is_ident(c) && c != ':').filter(|w| !w.is_empty()).collect();
    for (i, w) in words.iter().enumerate() {
        if *w == "unsafe" {
            let next_is_item = words.get(i + 1).is_some_and(|n| ["fn", "impl", "trait", "extern"].contains(n));
            let block = code.split("unsafe").skip(1).any(|rest| rest.trim_start().starts_with('{'));
            if next_is_item || block {
                out.push("unsafe".to_string());
            }
        }
        for prefix in ["libc::", "nix::"] {
            if let Some(item) = w.find(prefix).map(|at| &w[at + prefix.len()..]) {
                let constant = prefix == "libc::" && item.chars().next().is_some_and(|c| c.is_ascii_uppercase());
                let ident_before = w.find(prefix).is_some_and(|at| at > 0 && !w[..at].ends_with("::"));
                if !constant && !ident_before {
                    out.push(format!("{prefix}{item}"));
                }
            }
        }
    }
    out
}

#[test]
fn unsafe_and_raw_syscalls_live_in_exec() {
    let found = raw_outside_exec();
    assert!(
        found.is_empty(),
        "unsafe or raw system calls outside src/exec (move them into exec, see docs/ARCHITECTURE.md):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_raw_use_scanner_sees_calls_and_lets_constants_pass() {
    assert_eq!(raw_uses("let n = unsafe { libc::getrandom(p, n, 0) };"), ["unsafe", "libc::getrandom"]);
    assert_eq!(raw_uses("pub unsafe fn f() {}"), ["unsafe"]);
    assert_eq!(raw_uses("use nix::unistd::fork;"), ["nix::unistd::fork"]);
    assert_eq!(raw_uses("    .custom_flags(libc::O_NOFOLLOW)"), Vec::<String>::new());
    assert_eq!(raw_uses("fn bad_upstreams_and_unsafe_values_are_errors() {"), Vec::<String>::new());
    assert_eq!(raw_uses("let x: std::os::raw::c_int = 0;"), Vec::<String>::new());
}
