//! The crate's vocabulary rules, checked on the source text (unit tier: reads `src/`,
//! needs nothing else).
//!
//! - One word, one thing: no two public types (`struct`, `enum`, `type`, `trait`,
//!   `union`, at any `pub(…)` visibility) anywhere under `src/` share a name. A second
//!   `Config` or `State` is renamed by its role instead.

use std::collections::BTreeMap;
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
