//! Values between Rust and Rhai.
//!
//! Invariant: data going into a script is serialized with `rhai::serde::to_dynamic`;
//! data coming back is turned into the spec's own `Node` tree and read with the spec's
//! deserializer, so a hook's mistakes are reported like a user's: with the path of the
//! wrong field, unknown keys with "did you mean", and the same messages.

use crate::diag::Problem;
use crate::spec::de;
use crate::spec::node::{Entry, Node, NodeKind, Path, MAX_DEPTH};
use rhai::{Array, Dynamic, Map};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::cell::RefCell;

/// A value for a script. Errors only on types Rhai cannot hold (none in spec or plan).
pub fn to_script<T: Serialize>(value: &T) -> Result<Dynamic, String> {
    rhai::serde::to_dynamic(value).map_err(|e| e.to_string())
}

/// The spec as a script sees it: top-level lists and maps are present even when
/// empty, so that `spec.packages.push(..)` works on any spec.
pub fn spec_to_script(spec: &crate::spec::Spec) -> Result<Dynamic, String> {
    let mut d = to_script(spec)?;
    if let Some(mut m) = d.write_lock::<Map>() {
        for key in ["packages", "files", "mounts", "hooks"] {
            m.entry(key.into()).or_insert_with(|| Array::new().into());
        }
        for key in ["processes", "vars", "services"] {
            m.entry(key.into()).or_insert_with(|| Map::new().into());
        }
    }
    Ok(d)
}

/// A problem with data a script returned; the path is inside that data.
#[derive(Debug, Clone)]
pub struct DataProblem {
    pub path: Path,
    pub message: String,
    pub help: Option<String>,
}

impl DataProblem {
    fn from_problem(p: Problem) -> Self {
        DataProblem { path: p.path.unwrap_or_default(), message: p.message, help: p.help }
    }
}

/// Read a script's result as `T`: all unknown keys, or the first wrong value.
pub fn from_script<T: DeserializeOwned>(value: &Dynamic) -> Result<T, Vec<DataProblem>> {
    let node = to_node(value, Path::root(), 0).map_err(|p| vec![p])?;
    let unknown = RefCell::new(Vec::new());
    let r = de::from_node::<T>(&node, Path::root(), &unknown);
    let mut problems: Vec<DataProblem> = unknown.into_inner().into_iter().map(DataProblem::from_problem).collect();
    match r {
        Ok(v) if problems.is_empty() => Ok(v),
        Ok(_) => Err(problems),
        Err(e) => {
            let message = match e.message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
                Some(k) => format!("missing required key `{k}`"),
                None => e.message,
            };
            problems.push(DataProblem { path: e.path.unwrap_or_default(), message, help: e.help });
            Err(problems)
        }
    }
}

fn to_node(d: &Dynamic, path: Path, depth: usize) -> Result<Node, DataProblem> {
    let node = |kind| Ok(Node { kind, span: 0..0 });
    if depth > MAX_DEPTH {
        return Err(DataProblem {
            path,
            message: format!("data is nested more than {MAX_DEPTH} levels deep"),
            help: None,
        });
    }
    if d.is_unit() {
        return node(NodeKind::Null);
    }
    if let Ok(b) = d.as_bool() {
        return node(NodeKind::Bool(b));
    }
    if let Ok(i) = d.as_int() {
        return node(NodeKind::Int(i));
    }
    if let Ok(f) = d.as_float() {
        return node(NodeKind::Float(f));
    }
    if let Ok(c) = d.as_char() {
        return node(NodeKind::Str(c.to_string()));
    }
    if d.is_string() {
        let s = d.clone().into_immutable_string().map(|s| s.to_string()).unwrap_or_default();
        return node(NodeKind::Str(s));
    }
    if let Some(a) = d.read_lock::<Array>() {
        let mut items = Vec::with_capacity(a.len());
        for (i, item) in a.iter().enumerate() {
            items.push(to_node(item, path.index(i), depth + 1)?);
        }
        return node(NodeKind::Seq(items));
    }
    if let Some(m) = d.read_lock::<Map>() {
        let mut entries = Vec::with_capacity(m.len());
        for (k, v) in m.iter() {
            let value = to_node(v, path.key(k), depth + 1)?;
            entries.push(Entry { key: k.to_string(), key_span: 0..0, value });
        }
        return node(NodeKind::Map(entries));
    }
    if let Some(b) = d.read_lock::<rhai::Blob>() {
        return node(NodeKind::Seq(b.iter().map(|&x| Node { kind: NodeKind::Int(x.into()), span: 0..0 }).collect()));
    }
    Err(DataProblem {
        path,
        message: format!("a value of type `{}` cannot be part of a spec or plan", d.type_name()),
        help: Some("use strings, numbers, booleans, arrays and maps".into()),
    })
}

/// `services.php.pools[0]` with the root shown as `(top level)`.
pub fn show(path: &Path) -> String {
    if path.0.is_empty() {
        "(top level)".into()
    } else {
        path.to_string()
    }
}

/// Problems found by the spec's validation, as data problems.
pub fn validation(problems: Vec<Problem>) -> Vec<DataProblem> {
    problems.into_iter().map(DataProblem::from_problem).collect()
}

/// Problems across a plan's fields (`Plan::problems`), as data problems.
pub fn plan_rules(problems: Vec<(Path, String)>) -> Vec<DataProblem> {
    problems.into_iter().map(|(path, message)| DataProblem { path, message, help: None }).collect()
}
