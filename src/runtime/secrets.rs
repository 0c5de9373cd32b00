//! `container secret`: list a container's secrets, ask for a new value of one.
//!
//! Invariant: nothing here writes a secret. `regenerate` only records the request
//! (`layout::write_regenerate`); `plan` shows what it changes
//! (`plan::secrets::regenerations`) and `apply` makes the value and carries the
//! change out like any other, so a new value is never a surprise and is always
//! followed by the files, services and init tasks that use it.

use super::layout::{self, Dirs};
use super::prepare::{self, SecretFile};
use super::RunError;
use crate::plan::Plan;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::Path;

/// The plan whose secrets a container has: the applied one, else the one of an
/// interrupted first apply.
fn plan_of(root: &Path, name: &str) -> Result<Plan, RunError> {
    match super::applied(root, name)? {
        Some(p) => Ok(p),
        None => super::pending(root, name)?.ok_or_else(|| RunError::NotFound(name.to_string())),
    }
}

/// One secret of a container, as `container secret list` shows it (never its value).
#[derive(Debug, Clone, Serialize)]
pub struct SecretInfo {
    pub name: String,
    /// `ok`, `missing`, `empty` or why the file cannot be used.
    pub state: String,
    /// The next apply makes a new value.
    pub regenerate: bool,
    /// Rendered files and init tasks that use it.
    pub used_by: Vec<String>,
    pub path: String,
}

/// The secrets of container `name`'s plan.
pub fn list(root: &Path, name: &str) -> Result<Vec<SecretInfo>, RunError> {
    let plan = plan_of(root, name)?;
    let dirs = Dirs::new(root, name);
    let pending = layout::read_regenerate(&dirs)?;
    Ok(plan
        .secrets
        .iter()
        .map(|s| {
            let state = match prepare::secret_file(&dirs, s) {
                SecretFile::Ok => "ok".to_string(),
                SecretFile::Missing => "missing".to_string(),
                SecretFile::Empty => "empty".to_string(),
                SecretFile::Refused(e) => format!("unusable: {e}"),
            };
            let files = plan.files.iter().filter(|(_, f)| f.content.secrets().any(|x| x == s)).map(|(p, _)| p.clone());
            let init = plan
                .init
                .iter()
                .filter(|(_, t)| t.stdin.as_ref().is_some_and(|i| i.secrets().any(|x| x == s)))
                .map(|(id, _)| format!("init {id}"));
            SecretInfo {
                name: s.clone(),
                state,
                regenerate: pending.contains(s),
                used_by: files.chain(init).collect(),
                path: dirs.secrets().join(s).display().to_string(),
            }
        })
        .collect())
}

/// Ask the next apply for a new value of secret `key` of container `name` (the
/// caller holds the container's lock). Returns every secret now asked for.
pub fn regenerate(root: &Path, name: &str, key: &str) -> Result<BTreeSet<String>, RunError> {
    let plan = plan_of(root, name)?;
    if !plan.secrets.contains(key) {
        let known: Vec<&str> = plan.secrets.iter().map(String::as_str).collect();
        let known =
            if known.is_empty() { "it has none".to_string() } else { format!("its secrets: {}", known.join(", ")) };
        return Err(RunError::Failed(format!("container `{name}` has no secret `{key}` ({known})")));
    }
    let dirs = Dirs::new(root, name);
    let mut keys = layout::read_regenerate(&dirs)?;
    keys.insert(key.to_string());
    layout::write_regenerate(&dirs, &keys)?;
    Ok(keys)
}

/// Refuse to start container `name` when a secret of its applied plan cannot be
/// used (see `prepare::check_secrets`): `restart` asks before it stops anything.
pub fn check(root: &Path, name: &str) -> Result<(), RunError> {
    let Some(plan) = super::applied(root, name)? else { return Ok(()) };
    prepare::check_secrets(&plan, Some(&plan), &Dirs::new(root, name), &Default::default())
}
