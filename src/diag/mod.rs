//! Diagnostics at the user edge.
//!
//! Invariant: the library reports problems as plain `Problem` data (message, path,
//! span, help); only this module turns them into miette reports with source
//! snippets. All problems of one file travel together, so the user sees them at once.

use crate::vocab::path::{Path, Span};
use miette::{Diagnostic, NamedSource, SourceSpan};
use std::fmt;
use std::sync::Arc;

/// Text a span points into: the spec itself, or a script it loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    pub text: Arc<str>,
}

/// One problem with a spec, found at any stage before execution.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub message: String,
    /// Where in the spec (dotted path), when known.
    pub path: Option<Path>,
    /// Byte range in `source` (or in the spec when `source` is `None`).
    pub span: Option<Span>,
    pub help: Option<String>,
    /// Short text under the caret; defaults to the message.
    pub label: Option<String>,
}

impl Problem {
    pub fn new(message: impl Into<String>) -> Self {
        Problem { message: message.into(), path: None, span: None, help: None, label: None }
    }
    pub fn at(mut self, path: Path) -> Self {
        self.path = Some(path);
        self
    }
    pub fn span(mut self, span: Span) -> Self {
        self.span = Some(span);
        self
    }
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The closest candidate to a word (lives in `vocab`, which checks values too).
pub use crate::vocab::did_you_mean;

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// A problem with the place it is at, as `validate --format json|short` prints it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlacedProblem {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub help: Option<String>,
}

/// All problems of one spec file, ready to print.
#[derive(Debug, Clone)]
pub struct SpecErrors {
    pub file: String,
    pub text: Arc<str>,
    pub problems: Vec<(Option<Source>, Problem)>,
}

impl SpecErrors {
    pub fn new(file: &str, text: &str) -> Self {
        SpecErrors { file: file.to_string(), text: Arc::from(text), problems: Vec::new() }
    }
    pub fn push(&mut self, p: Problem) {
        self.problems.push((None, p));
    }
    pub fn push_in(&mut self, source: Source, p: Problem) {
        self.problems.push((Some(source), p));
    }
    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// `file:line:col: message` lines, the stable form used by `--json`-less scripts and tests.
    pub fn brief(&self) -> Vec<String> {
        self.located().into_iter().map(|p| format!("{}:{}:{}: {}", p.file, p.line, p.column, p.message)).collect()
    }

    /// Every problem with the file it is in (the spec, or a script it loaded) and its
    /// 1-based line and column (1:1 when the problem has no place).
    pub fn located(&self) -> Vec<PlacedProblem> {
        self.problems
            .iter()
            .map(|(src, p)| {
                let (name, text) = match src {
                    Some(s) => (s.name.as_str(), &*s.text),
                    None => (self.file.as_str(), &*self.text),
                };
                let (line, column) = line_col(text, p.span.as_ref().map_or(0, |s| s.start));
                PlacedProblem { file: name.to_string(), line, column, message: p.message.clone(), help: p.help.clone() }
            })
            .collect()
    }

    /// A miette report with one related diagnostic per problem.
    pub fn report(&self) -> miette::Report {
        let related = self
            .problems
            .iter()
            .map(|(src, p)| {
                let (name, text) = match src {
                    Some(s) => (s.name.clone(), s.text.clone()),
                    None => (self.file.clone(), self.text.clone()),
                };
                let span = p.span.clone().map(|s| shrink(&text, s));
                let label = p.label.clone().unwrap_or_else(|| p.message.clone());
                // A snippet of a huge line helps nobody: name the place instead.
                let line_len = span.as_ref().map_or(0, |s| {
                    let start = text[..s.start.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
                    text[start..].find('\n').unwrap_or(text.len() - start)
                });
                if line_len > MAX_SNIPPET_LINE {
                    let (l, c) = line_col(&text, span.as_ref().map_or(0, |s| s.start));
                    return One {
                        message: format!("{name}:{l}:{c}: {}", p.message),
                        src: NamedSource::new(name, String::new()),
                        span: None,
                        label,
                        help: p.help.clone(),
                    };
                }
                One {
                    message: p.message.clone(),
                    src: NamedSource::new(name, text.to_string()),
                    span: span.map(|s| SourceSpan::new(s.start.into(), s.len())),
                    label,
                    help: p.help.clone(),
                }
            })
            .collect();
        miette::Report::new(All {
            summary: format!(
                "{}: {} problem{} found; nothing was changed",
                self.file,
                self.problems.len(),
                if self.problems.len() == 1 { "" } else { "s" }
            ),
            related,
        })
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.brief().join("\n"))
    }
}
impl std::error::Error for SpecErrors {}

/// Longest source line shown as a snippet.
const MAX_SNIPPET_LINE: usize = 400;

/// A span over a whole table is unreadable: keep its first line.
fn shrink(text: &str, span: Span) -> Span {
    let start = span.start.min(text.len());
    let end = span.end.min(text.len()).max(start);
    match text.get(start..end).and_then(|s| s.find('\n')) {
        Some(nl) if end - start > 80 => start..start + nl,
        _ => start..end,
    }
}

#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{summary}")]
struct All {
    summary: String,
    #[related]
    related: Vec<One>,
}

#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
struct One {
    message: String,
    #[source_code]
    src: NamedSource<String>,
    #[label("{label}")]
    span: Option<SourceSpan>,
    label: String,
    #[help]
    help: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_only() {
        assert_eq!(did_you_mean("hostnme", ["hostname", "name"]), Some("hostname"));
        assert_eq!(did_you_mean("zzz", ["hostname", "name"]), None);
    }

    #[test]
    fn line_and_column_are_one_based() {
        assert_eq!(line_col("a\nbé c", 5), (2, 3));
        assert_eq!(line_col("", 0), (1, 1));
    }
}
