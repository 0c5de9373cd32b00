//! Where a hook went wrong, told twice: in the script and at the spec entry.
//!
//! Invariant: every failure of a hook yields one problem located in the script text
//! (from Rhai's line and column, or the hook function's name when Rhai has no
//! position) and one at `hooks[i]` in the spec, so the user sees both what failed and
//! which entry loaded it.

use super::convert::{self, DataProblem};
use super::engine::{self, BUDGET_MSG};
use super::{Hook, ScriptProblem};
use crate::diag::{line_col, Problem};
use crate::spec::node::{Path, Span};
use rhai::{EvalAltResult, Position};

pub fn spec_problem(index: usize, field: &str, message: String, help: &str) -> ScriptProblem {
    ScriptProblem {
        source: None,
        problem: Problem::new(message).at(Path::parse(&format!("hooks[{index}].{field}"))).help(help),
    }
}

/// The position an error happened at: the innermost one known.
fn innermost_pos(e: &EvalAltResult) -> Position {
    match e {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, pos) => {
            let p = innermost_pos(inner);
            if p.is_none() {
                *pos
            } else {
                p
            }
        }
        e => e.position(),
    }
}

/// Rhai's message without its " (line 3, position 5)" tail.
fn strip_position(mut msg: String) -> String {
    if msg.ends_with(')') {
        if let Some(at) = msg.rfind(" (line ") {
            msg.truncate(at);
        }
    }
    msg
}

impl Hook {
    /// Byte offset of a Rhai position in the script.
    pub fn offset(&self, pos: Position) -> Option<usize> {
        let line = pos.line()?;
        let text = &*self.source.text;
        let start = if line <= 1 { 0 } else { text.match_indices('\n').nth(line - 2).map(|(i, _)| i + 1)? };
        let col = pos.position().unwrap_or(1).max(1);
        let line_text = text[start..].split('\n').next().unwrap_or("");
        let within = line_text.char_indices().nth(col - 1).map_or(line_text.len(), |(i, _)| i);
        Some(start + within)
    }

    /// Where `fn <name>` is defined (its name), if found.
    pub fn fn_offset(&self, name: &str) -> Option<usize> {
        let text = &*self.source.text;
        let mut from = 0;
        while let Some(at) = text[from..].find("fn ") {
            let after = from + at + 3;
            let rest = &text[after..];
            let skipped = rest.len() - rest.trim_start().len();
            if rest.trim_start().starts_with(name) {
                return Some(after + skipped);
            }
            from = after;
        }
        None
    }

    /// A span starting at `offset`: the word there, or one character.
    fn span_at(&self, offset: usize) -> Span {
        let text = &*self.source.text;
        let rest = text.get(offset..).unwrap_or("");
        let word = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
        let len = if word > 0 { word } else { rest.chars().next().filter(|c| *c != '\n').map_or(0, char::len_utf8) };
        offset..offset + len
    }

    /// One problem in the script (at `offset`) and one at the spec entry that loaded it.
    pub fn problems(&self, offset: Option<usize>, message: String, help: Option<String>) -> Vec<ScriptProblem> {
        let loaded_by = format!("loaded by hooks[{}] in the spec", self.index);
        let mut p = Problem::new(message).help(match help {
            Some(h) => format!("{h}; {loaded_by}"),
            None => loaded_by,
        });
        if let Some(o) = offset {
            p = p.span(self.span_at(o)).label("here");
        }
        let (line, col) = line_col(&self.source.text, offset.unwrap_or(0));
        let here = ScriptProblem {
            source: None,
            problem: Problem::new(format!("error in this hook ({}:{line}:{col})", self.source.name))
                .at(Path::parse(&format!("hooks[{}].{}", self.index, self.field)))
                .help("the script's error is shown with its source")
                .label("error in this hook"),
        };
        vec![ScriptProblem { source: Some(self.source.clone()), problem: p }, here]
    }

    pub fn eval_error(&self, e: &EvalAltResult, func: Option<&str>) -> Vec<ScriptProblem> {
        use EvalAltResult as E;
        let inner = e.unwrap_inner();
        let budget = || {
            Some(format!(
                "one run of a hook may take at most {} operations and {} s",
                engine::MAX_OPERATIONS,
                engine::MAX_RUN_TIME.as_secs()
            ))
        };
        let (message, help) = match inner {
            E::ErrorTooManyOperations(_) => (BUDGET_MSG.to_string(), budget()),
            E::ErrorTerminated(v, _) if v.to_string() == engine::TIME_MARK => (BUDGET_MSG.to_string(), budget()),
            E::ErrorStackOverflow(_) => (
                "hook functions call each other too deeply".to_string(),
                Some(format!("at most {} nested calls", engine::MAX_CALL_LEVELS)),
            ),
            E::ErrorDataTooLarge(..) => (
                strip_position(inner.to_string()),
                Some(format!(
                    "strings may have at most {} bytes, arrays and maps {} items",
                    engine::MAX_STRING,
                    engine::MAX_ITEMS
                )),
            ),
            other => (strip_position(other.to_string()), None),
        };
        let offset = self.offset(innermost_pos(e)).or_else(|| func.and_then(|f| self.fn_offset(f)));
        self.problems(offset, message, help)
    }

    /// Problems with the data a hook function returned.
    pub fn data_problems(&self, func: &str, what: &str, problems: Vec<DataProblem>) -> Vec<ScriptProblem> {
        let offset = self.fn_offset(func);
        let mut out: Vec<ScriptProblem> = Vec::new();
        let mut here = None;
        for p in problems {
            let msg = format!("`{func}` returned an invalid {what}: {} (at `{}`)", p.message, convert::show(&p.path));
            let mut two = self.problems(offset, msg, p.help);
            here = two.pop();
            out.extend(two);
        }
        out.extend(here);
        out
    }
}
