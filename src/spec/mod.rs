//! Spec: read and check what the user wrote.
//!
//! Invariant: no I/O of its own (the caller hands `load_file` the reader of the spec
//! file: `exec::beneath::read_named`, bounded, regular files only). A spec either
//! loads completely valid, or yields every problem found (syntax, unknown keys,
//! types, values, cross-field conflicts), each pinned to a span of the file.

pub mod de;
pub mod host;
pub mod node;
pub mod types;
pub mod validate;

/// The checked value types live in the leaf `vocab` (modules and the plan use them too).
pub use crate::vocab::values;

use crate::diag::{Problem, SpecErrors};
use node::{Node, Path};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
pub use types::Spec;

/// Largest spec file accepted. Real specs are a few KiB.
pub const MAX_SPEC_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Yaml,
}

impl Format {
    pub fn from_path(p: &FsPath) -> Option<Format> {
        match p.extension()?.to_str()? {
            "toml" => Some(Format::Toml),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

/// A spec that parsed and validated, with what is needed to point at its parts.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub spec: Spec,
    pub tree: Node,
    /// The file name as the user gave it.
    pub file: String,
    pub text: Arc<str>,
    /// Folder of the spec: hooks and `source` files are read relative to it.
    pub dir: PathBuf,
}

impl Loaded {
    /// Turn problems found after loading (compile, hooks) into located errors.
    pub fn errors(&self, problems: Vec<Problem>) -> SpecErrors {
        let mut errs = SpecErrors::new(&self.file, &self.text);
        for p in problems {
            errs.push(locate(&self.tree, p));
        }
        errs
    }
}

/// Give a problem that only knows its path the span of that path.
pub fn locate(tree: &Node, mut p: Problem) -> Problem {
    if p.span.is_none() {
        if let Some(path) = &p.path {
            p.span = Some(tree.span_of(&path.0));
        }
    }
    p
}

/// Read and check a spec file. `read` reads the file the user named, at most the
/// limit given ([`MAX_SPEC_BYTES`]), regular files only: the spec layer does no I/O
/// of its own, the caller passes `exec::beneath::read_named` (the DAG keeps `spec`
/// below `exec`).
pub fn load_file(
    path: &FsPath,
    read: impl FnOnce(&FsPath, u64) -> std::io::Result<Vec<u8>>,
) -> Result<Loaded, SpecErrors> {
    let file = path.display().to_string();
    let fail = |msg: String, help: &str| {
        let mut e = SpecErrors::new(&file, "");
        e.push(Problem::new(msg).help(help));
        e
    };
    let format = Format::from_path(path)
        .ok_or_else(|| fail(format!("{file}: unknown spec format"), "name the file *.toml, *.yaml or *.yml"))?;
    let bytes = read(path, MAX_SPEC_BYTES as u64).map_err(|e| {
        fail(
            format!("cannot read {file}: {e}"),
            &format!(
                "a spec is a regular file (not a device, FIFO or folder); a spec may have at most {MAX_SPEC_BYTES} \
                 bytes, large content belongs in files next to the spec (`source = ...`)"
            ),
        )
    })?;
    let dir = path.parent().map(FsPath::to_path_buf).unwrap_or_default();
    let (spec, tree, text) = parse_bytes(&file, &bytes, format)?;
    Ok(Loaded { spec, tree, file, text, dir })
}

/// Load a spec compiled into the binary (the default example).
pub fn load_embedded(name: &str, text: &str) -> Result<Loaded, SpecErrors> {
    let (spec, tree, text) = parse_bytes(name, text.as_bytes(), Format::Toml)?;
    Ok(Loaded { spec, tree, file: name.to_string(), text, dir: PathBuf::from(".") })
}

/// Parse and check spec text. `file` names it in diagnostics.
pub fn parse_bytes(file: &str, bytes: &[u8], format: Format) -> Result<(Spec, Node, Arc<str>), SpecErrors> {
    let text: Arc<str> = match std::str::from_utf8(bytes) {
        Ok(t) => Arc::from(t),
        Err(e) => {
            let lossy = String::from_utf8_lossy(bytes).to_string();
            // The valid prefix is copied unchanged, so the offset holds in `lossy` too.
            let at = e.valid_up_to();
            let mut errs = SpecErrors::new(file, &lossy);
            errs.push(
                Problem::new("the spec is not UTF-8 text").span(at..at).help("a spec is a TOML or YAML text file"),
            );
            return Err(errs);
        }
    };
    let mut errs = SpecErrors::new(file, &text);
    if text.trim().is_empty() {
        errs.push(
            Problem::new("the spec is empty").span(0..0).help("a spec needs at least `name`, e.g. name = \"web\""),
        );
        return Err(errs);
    }
    let parsed = match format {
        Format::Toml => node::parse_toml(&text),
        Format::Yaml => node::parse_yaml(&text),
    };
    let tree = match parsed {
        Ok(t) => t,
        Err(syntax) => {
            for s in syntax {
                errs.push(Problem::new(s.message).span(s.span).label("here"));
            }
            return Err(errs);
        }
    };
    if !matches!(tree.kind, node::NodeKind::Map(_)) {
        errs.push(
            Problem::new(format!("the spec must be a table of keys, found {}", tree.type_name()))
                .span(tree.span.clone())
                .help("start with `name: web` (YAML) or `name = \"web\"` (TOML)"),
        );
        return Err(errs);
    }
    let (spec, problems, removed) = deserialize::<Spec>(&tree);
    let clean = problems.is_empty();
    for p in problems {
        errs.push(p);
    }
    let Some(spec) = spec else { return Err(errs) };
    // With a bad value left out, the rest is still checked, so every problem of the
    // file comes at once; but not a check of the same table as a value left out,
    // which could be a consequence of its absence.
    let related = |p: &Problem| {
        p.path.as_ref().is_some_and(|at| {
            removed.iter().any(|r| {
                let n = at.0.len().min(r.0.len());
                at.0[..n] == r.0[..n]
                    || (at.0.len() > 1 && r.0.len() > 1 && at.0[..at.0.len() - 1] == r.0[..r.0.len() - 1])
            })
        })
    };
    for p in validate::validate(&spec) {
        if clean || !related(&p) {
            errs.push(locate(&tree, p));
        }
    }
    if errs.is_empty() {
        Ok((spec, tree, text))
    } else {
        Err(errs)
    }
}

/// Deserialize with recovery: after a type error the offending value is removed and
/// deserialization retried, so every independent problem is reported in one run.
/// Returns what deserialized once the bad values were left out (`None` when even that
/// failed), the problems, and the paths left out.
fn deserialize<T: serde::de::DeserializeOwned>(tree: &Node) -> (Option<T>, Vec<Problem>, Vec<Path>) {
    let mut work = tree.clone();
    let unknown = RefCell::new(Vec::new());
    let mut seen_unknown: BTreeMap<Path, Problem> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut removed: Vec<Path> = Vec::new();
    let mut result = None;
    for _ in 0..100 {
        unknown.borrow_mut().clear();
        let r = de::from_node::<T>(&work, Path::root(), &unknown);
        for p in unknown.borrow_mut().drain(..) {
            let key = p.path.clone().unwrap_or_default();
            seen_unknown.entry(key).or_insert(p);
        }
        match r {
            Ok(spec) => {
                result = Some(spec);
                break;
            }
            Err(e) => {
                let path = e.path.clone().unwrap_or_default();
                let missing =
                    e.message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')).map(str::to_string);
                // An error at an ancestor of a removed value is a consequence of the removal.
                let suppressed = missing.as_ref().is_some_and(|k| removed.contains(&path.key(k)))
                    || removed.iter().any(|r| r.0.len() > path.0.len() && r.0.starts_with(&path.0));
                if !suppressed {
                    let mut p = Problem::new(match &missing {
                        Some(k) => format!("missing required key `{k}`"),
                        None => e.message.clone(),
                    })
                    .at(path.clone())
                    .label(if missing.is_some() {
                        "a required key is missing in this table"
                    } else {
                        "invalid value"
                    });
                    if let Some(span) = e.span.clone() {
                        p = p.span(span);
                    }
                    if let Some(h) = e.help.clone() {
                        p = p.help(h);
                    } else if let Some(k) = &missing {
                        let where_ = if path.0.is_empty() { "the top level".to_string() } else { format!("`{path}`") };
                        p = p.help(format!("add `{k}` to {where_}"));
                    }
                    problems.push(p);
                }
                if path.0.is_empty() || !work.remove(&path.0) {
                    break;
                }
                removed.push(path);
            }
        }
    }
    let mut all: Vec<Problem> = seen_unknown.into_values().collect();
    all.extend(problems);
    all.sort_by_key(|p| p.span.as_ref().map_or(0, |s| s.start));
    (result, all, removed)
}

/// The span of a key, for problems about the key itself rather than its value.
pub fn key_span(tree: &Node, path: &Path) -> Option<node::Span> {
    tree.key_span(&path.0)
}

/// Path helper for validation code.
pub fn p(s: &str) -> Path {
    Path::parse(s)
}
