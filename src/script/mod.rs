//! Rhai hooks (placeholder until the engine lands).

use crate::diag::{Problem, Source};
use crate::plan::{Plan, SourceReader};
use crate::spec::node::Path;
use crate::spec::Spec;

/// A problem in a hook: located in the script (`source`) or in the spec.
#[derive(Debug, Clone)]
pub struct ScriptProblem {
    pub source: Option<Source>,
    pub problem: Problem,
}

pub struct Hooks {}

impl Hooks {
    pub fn load(spec: &Spec, _reader: &dyn SourceReader) -> Result<Hooks, Vec<ScriptProblem>> {
        if spec.hooks.is_empty() {
            Ok(Hooks {})
        } else {
            Err(vec![ScriptProblem {
                source: None,
                problem: Problem::new("hooks are not supported yet").at(Path::parse("hooks")),
            }])
        }
    }
    pub fn on_spec(&self, spec: Spec) -> Result<Spec, Vec<ScriptProblem>> {
        Ok(spec)
    }
    pub fn on_plan(&self, plan: Plan) -> Result<Plan, Vec<ScriptProblem>> {
        Ok(plan)
    }
}
