//! Render changes for people (Terraform-like) and machines (`--json`).
//!
//! Invariant: output is a pure function of the changes (and whether colour is on),
//! so it is byte-identical for identical inputs. Secrets appear only as `(secret)`.

use super::diff::{ChangeOp, Changes};
use super::Plan;
use anstyle::{AnsiColor, Style};
use std::fmt::Write;

fn style(op: ChangeOp) -> Style {
    let c = match op {
        ChangeOp::Create => AnsiColor::Green,
        ChangeOp::Update => AnsiColor::Yellow,
        ChangeOp::Replace => AnsiColor::Magenta,
        ChangeOp::Delete => AnsiColor::Red,
    };
    Style::new().fg_color(Some(c.into()))
}

/// Human-readable plan. `color` adds ANSI styles (the caller decides: terminal, NO_COLOR).
pub fn human(changes: &Changes, color: bool) -> String {
    let paint = |s: Style, text: &str| if color { format!("{s}{text}{s:#}") } else { text.to_string() };
    let mut out = String::new();
    if changes.is_empty() {
        let _ = writeln!(out, "container {}: No changes. The container matches the spec.", changes.container);
        return out;
    }
    for c in &changes.changes {
        let head = format!("{} {:<9} {}", c.op.symbol(), c.kind, c.summary);
        let effects = if c.effects.is_empty() {
            String::new()
        } else {
            let e: Vec<String> = c.effects.iter().map(|e| e.to_string()).collect();
            format!("  → {}", e.join(", "))
        };
        let _ = writeln!(out, "{}{}", paint(style(c.op).bold(), &head), paint(Style::new().dimmed(), &effects));
        for f in &c.fields {
            let _ = writeln!(out, "    {f}");
        }
        if let Some(content) = &c.content {
            for line in content.lines() {
                let _ = writeln!(out, "{}", paint(style(ChangeOp::Create), format!("    + {line}").trim_end()));
            }
            if !content.is_empty() && !content.ends_with('\n') {
                let _ = writeln!(out, "    \\ No newline at end of file");
            }
        }
        if let Some(d) = &c.diff {
            for line in d.lines() {
                let s = if line.starts_with("+++") || line.starts_with("---") {
                    Style::new().bold()
                } else if line.starts_with('+') {
                    style(ChangeOp::Create)
                } else if line.starts_with('-') {
                    style(ChangeOp::Delete)
                } else if line.starts_with("@@") {
                    Style::new().fg_color(Some(AnsiColor::Cyan.into()))
                } else {
                    Style::new()
                };
                let _ = writeln!(out, "{}", paint(s, format!("    {line}").trim_end()));
            }
        }
    }
    for d in &changes.drift {
        let (sym, kind, what, repair) = d.line();
        let op = if sym == "+" { ChangeOp::Create } else { ChangeOp::Update };
        let head = format!("{sym} {kind:<9} {what}");
        let _ = writeln!(
            out,
            "{}{}",
            paint(style(op).bold(), &head),
            paint(Style::new().dimmed(), &format!("  → {repair}"))
        );
    }
    let repair = match changes.drift.len() {
        0 => String::new(),
        n => format!(", {n} drifted to repair"),
    };
    let _ = writeln!(
        out,
        "Plan: {} to add, {} to change, {} to destroy{repair}.",
        changes.count(ChangeOp::Create),
        changes.count(ChangeOp::Update),
        changes.destroyed()
    );
    out
}

/// Stable machine format of a plan run.
#[derive(serde::Serialize)]
struct JsonOut<'a> {
    format: u32,
    container: &'a str,
    summary: ChangeSummary,
    changes: &'a [super::diff::Change],
    #[serde(skip_serializing_if = "no_drift")]
    drift: &'a [super::actions::Drift],
    plan: &'a Plan,
}

fn no_drift(d: &&[super::actions::Drift]) -> bool {
    d.is_empty()
}

#[derive(serde::Serialize)]
struct ChangeSummary {
    add: usize,
    change: usize,
    destroy: usize,
}

pub fn json(changes: &Changes, plan: &Plan) -> String {
    let out = JsonOut {
        format: super::types::PLAN_FORMAT,
        container: &changes.container,
        summary: ChangeSummary {
            add: changes.count(ChangeOp::Create),
            change: changes.count(ChangeOp::Update),
            destroy: changes.destroyed(),
        },
        changes: &changes.changes,
        drift: &changes.drift,
        plan,
    };
    let mut s = serde_json::to_string_pretty(&out).expect("plans always serialize");
    s.push('\n');
    s
}
