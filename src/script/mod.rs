//! Rhai hooks: scripts that compute what a declaration cannot hold.
//!
//! Invariant: hooks only transform data. A script may define `fn on_spec(spec)` (runs
//! before modules; returns the spec) and `fn on_plan(plan)` (runs after; returns the
//! plan); its top level runs once at load. What comes back is read with the spec's
//! own deserializer and checked like a user's spec, so a hook can never smuggle an
//! invalid spec or plan past the checks: the plan's values are typed (modes, owners,
//! mount sources, devices, addresses, port mappings, signals, paths), so a bad one
//! fails right there with the field's path, and `Plan::problems` (a mount's source of
//! the wrong form for its kind) runs on each hook's result before the next. Every failure is reported twice: in the
//! script (line and column) and at the `hooks[i]` entry of the spec that loaded it.
//!
//! `read_file` and the reader: `SourceReader` is borrowed only during `load`, so the
//! files a script reads are cached there. At load the top level and the whole
//! `on_spec` chain run with the reader at hand (a run that asks for a new file stops,
//! the file is read, the run starts again; scripts are deterministic). `on_plan` runs
//! later and sees the files read so far plus every `read_file("literal")` in the
//! script, which are read ahead at load.

mod convert;
mod engine;
mod report;
#[cfg(test)]
mod tests;

use crate::diag::{Problem, Source};
use crate::spec::types::HookSpec;
use crate::spec::Spec;
use crate::vocab::plan::Plan;
use crate::vocab::source::SourceReader;
use engine::{lock, Shared};
use report::spec_problem;
use rhai::{CallFnOptions, Dynamic, Engine, EvalAltResult, Position, Scope, AST};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use engine::{BUDGET_MSG, MAX_OPERATIONS};

/// A problem in a hook: located in the script (`source`) or in the spec.
#[derive(Debug, Clone)]
pub struct ScriptProblem {
    pub source: Option<Source>,
    pub problem: Problem,
}

/// The hooks of one spec, loaded and ready to run.
pub struct Hooks {
    inner: Option<Box<Inner>>,
}

struct Inner {
    engine: Engine,
    shared: Arc<Mutex<Shared>>,
    hooks: Vec<Hook>,
    /// The `on_spec` chain, run at load with the reader at hand: (input, result).
    spec_run: Option<(Spec, Result<Spec, Vec<ScriptProblem>>)>,
}

struct Hook {
    index: usize,
    /// "script" or "inline": the key of the spec entry that holds it.
    field: &'static str,
    source: Source,
    ast: AST,
    on_spec: bool,
    on_plan: bool,
}

type Res<T> = Result<T, Box<EvalAltResult>>;

impl Hooks {
    /// Read, compile and run the top level of every hook, then the `on_spec` chain.
    pub fn load(spec: &Spec, reader: &dyn SourceReader) -> Result<Hooks, Vec<ScriptProblem>> {
        if spec.hooks.is_empty() {
            return Ok(Hooks { inner: None });
        }
        let shared = Arc::new(Mutex::new(Shared::default()));
        let mut inner = Inner { engine: engine::new_engine(shared.clone()), shared, hooks: Vec::new(), spec_run: None };
        let mut problems = Vec::new();
        for (index, h) in spec.hooks.iter().enumerate() {
            match inner.load_hook(index, h, reader) {
                Ok(Some(hook)) => inner.hooks.push(hook),
                Ok(None) => {}
                Err(p) => problems.extend(p),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let result = inner.run_on_spec(spec.clone(), Some(reader));
        inner.spec_run = Some((spec.clone(), result));
        Ok(Hooks { inner: Some(Box::new(inner)) })
    }

    /// Run every `on_spec` in order; the result is checked like a spec a user wrote.
    pub fn on_spec(&self, spec: Spec) -> Result<Spec, Vec<ScriptProblem>> {
        let Some(inner) = &self.inner else { return Ok(spec) };
        match &inner.spec_run {
            Some((input, result)) if *input == spec => result.clone(),
            _ => inner.run_on_spec(spec, None),
        }
    }

    /// Run every `on_plan` in order; resources the hooks added get origin "hook".
    pub fn on_plan(&self, plan: Plan) -> Result<Plan, Vec<ScriptProblem>> {
        let Some(inner) = &self.inner else { return Ok(plan) };
        inner.run_on_plan(plan)
    }
}

impl Inner {
    fn load_hook(
        &self,
        index: usize,
        h: &HookSpec,
        reader: &dyn SourceReader,
    ) -> Result<Option<Hook>, Vec<ScriptProblem>> {
        let (field, name, text) = match (&h.script, &h.inline) {
            (Some(rel), _) => match reader.read(rel) {
                Ok(text) => ("script", rel.clone(), text),
                Err(e) => {
                    return Err(vec![spec_problem(
                        index,
                        "script",
                        format!("cannot read the hook script: {e}"),
                        "a regular file inside the spec's folder (symlinks are followed only while they stay inside), at most 1 MiB",
                    )])
                }
            },
            (None, Some(text)) => ("inline", format!("hooks[{index}].inline"), text.clone()),
            (None, None) => return Ok(None),
        };
        let source = Source { name, text: Arc::from(text) };
        self.prefetch(&source.text, reader);
        let mut hook = Hook { index, field, source, ast: AST::empty(), on_spec: false, on_plan: false };
        hook.ast = self.engine.compile(&*hook.source.text).map_err(|e| {
            let msg = format!("syntax error: {}", e.0);
            hook.problems(hook.offset(e.1), msg, None)
        })?;
        let mut wrong = Vec::new();
        for f in hook.ast.iter_functions() {
            let what = match f.name {
                "on_spec" => "spec",
                "on_plan" => "plan",
                _ => continue,
            };
            if f.params.len() == 1 {
                hook.on_spec |= what == "spec";
                hook.on_plan |= what == "plan";
            } else {
                wrong.extend(hook.problems(
                    hook.fn_offset(f.name),
                    format!("`{}` takes one parameter (the {what}), not {}", f.name, f.params.len()),
                    Some(format!("write `fn {}({what}) {{ ...; {what} }}`", f.name)),
                ));
            }
        }
        if !wrong.is_empty() {
            return Err(wrong);
        }
        if !hook.on_spec && !hook.on_plan {
            return Err(vec![spec_problem(
                index,
                field,
                "this hook defines neither `fn on_spec(spec)` nor `fn on_plan(plan)`".into(),
                "define at least one of them; the script's top level runs only once, at load",
            )]);
        }
        self.run(Some(reader), || self.engine.run_ast_with_scope(&mut Scope::new(), &hook.ast))
            .map_err(|e| hook.eval_error(&e, None))?;
        Ok(Some(hook))
    }

    /// Read every `read_file("literal")` of a script ahead, for `on_plan`.
    fn prefetch(&self, text: &str, reader: &dyn SourceReader) {
        let mut rest = text;
        while let Some(at) = rest.find("read_file(") {
            rest = &rest[at + "read_file(".len()..];
            let Some(lit) = rest.trim_start().strip_prefix('"') else { continue };
            let Some(end) = lit.find(['"', '\\', '\n']) else { continue };
            if !lit[end..].starts_with('"') {
                continue;
            }
            let path = &lit[..end];
            let mut s = lock(&self.shared);
            if engine::inside(path) && !s.files.contains_key(path) && s.files.len() < engine::MAX_READS {
                s.files.insert(path.to_string(), reader.read(path));
            }
        }
    }

    /// Run `f`; when it stops for a file not read yet, read it and run again.
    fn run<T>(&self, reader: Option<&dyn SourceReader>, mut f: impl FnMut() -> Res<T>) -> Res<T> {
        loop {
            {
                let mut s = lock(&self.shared);
                s.live = reader.is_some();
                s.wanted = None;
                s.started = Some(Instant::now());
            }
            let r = f();
            let wanted = {
                let mut s = lock(&self.shared);
                s.live = false;
                s.started = None;
                s.wanted.take()
            };
            let (Some(path), Some(reader)) = (wanted, reader) else { return r };
            let content = reader.read(&path);
            let mut s = lock(&self.shared);
            if s.files.len() >= engine::MAX_READS {
                let msg = format!("hooks may read at most {} files", engine::MAX_READS);
                return Err(Box::new(EvalAltResult::ErrorRuntime(msg.into(), Position::NONE)));
            }
            s.files.insert(path, content);
        }
    }

    fn call(
        &self,
        hook: &Hook,
        func: &str,
        arg: Dynamic,
        reader: Option<&dyn SourceReader>,
    ) -> Result<Dynamic, Vec<ScriptProblem>> {
        let out = self
            .run(reader, || {
                let opts = CallFnOptions::new().eval_ast(false);
                self.engine.call_fn_with_options::<Dynamic>(opts, &mut Scope::new(), &hook.ast, func, (arg.clone(),))
            })
            .map_err(|e| hook.eval_error(&e, Some(func)))?;
        let what = if func == "on_spec" { "spec" } else { "plan" };
        if out.is_map() {
            return Ok(out);
        }
        let msg = if out.is_unit() {
            format!("`{func}` returned nothing")
        } else {
            format!("`{func}` returned {}, not the {what} map", out.type_name())
        };
        Err(hook.problems(hook.fn_offset(func), msg, Some(format!("end `{func}` with `{what}` (the changed {what})"))))
    }

    fn run_on_spec(&self, mut spec: Spec, reader: Option<&dyn SourceReader>) -> Result<Spec, Vec<ScriptProblem>> {
        for hook in self.hooks.iter().filter(|h| h.on_spec) {
            let input = convert::spec_to_script(&spec)
                .map_err(|e| hook.problems(None, format!("cannot pass the spec to the script: {e}"), None))?;
            let out = self.call(hook, "on_spec", input, reader)?;
            spec = convert::from_script::<Spec>(&out).map_err(|ps| hook.data_problems("on_spec", "spec", ps))?;
            let invalid = crate::spec::validate::validate(&spec);
            if !invalid.is_empty() {
                return Err(hook.data_problems("on_spec", "spec", convert::validation(invalid)));
            }
        }
        Ok(spec)
    }

    fn run_on_plan(&self, mut plan: Plan) -> Result<Plan, Vec<ScriptProblem>> {
        for hook in self.hooks.iter().filter(|h| h.on_plan) {
            let input = convert::to_script(&plan)
                .map_err(|e| hook.problems(None, format!("cannot pass the plan to the script: {e}"), None))?;
            let out = self.call(hook, "on_plan", input, None)?;
            plan = convert::from_script::<Plan>(&out).map_err(|ps| hook.data_problems("on_plan", "plan", ps))?;
            let invalid = plan.problems();
            if !invalid.is_empty() {
                return Err(hook.data_problems("on_plan", "plan", convert::plan_rules(invalid)));
            }
            mark_origin(&mut plan);
        }
        Ok(plan)
    }
}

/// Resources without an origin were added by a hook.
fn mark_origin(plan: &mut Plan) {
    let hook = |o: &mut String| {
        if o.is_empty() {
            *o = "hook".into();
        }
    };
    plan.files.values_mut().for_each(|f| hook(&mut f.origin));
    plan.mounts.values_mut().for_each(|m| hook(&mut m.origin));
    plan.services.values_mut().for_each(|s| hook(&mut s.origin));
    plan.init.values_mut().for_each(|t| hook(&mut t.origin));
}
