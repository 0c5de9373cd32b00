//! The shared vocabulary: the types that `spec`, `modules`, `script`, `plan` and the
//! executor all speak.
//!
//! Invariant: a leaf. Nothing here imports another module of the crate, so every
//! layer can use these types without the layers importing each other in a circle
//! (docs/ARCHITECTURE.md, "Layers"). Plain data and its parsing, printing and schema
//! only: no I/O (`source::SourceReader` is the trait the reader of files next to a
//! spec, `exec::beneath::SpecFolder`, implements).
//! A type that a module's settings, the spec and the plan share goes here; the
//! spec-only and plan-only types stay in `spec` and `plan`.
//!
//! - [`values`]: checked values of the spec language (sizes, ports, paths, CIDRs, …).
//! - [`kinds`]: the spec's enums the plan stores as written (mount kind, net mode, …).
//! - [`path`]: places in a document (byte span, dotted path) for diagnostics.
//! - [`plan`]: the plan's data, what modules and hooks produce and `state.json` keeps.
//! - [`text`]: file content that may hold secret references.
//! - [`source`]: reading files next to the spec.

pub mod caps;
pub mod kinds;
pub mod path;
pub mod patterns;
pub mod plan;
pub mod source;
pub mod syscalls;
pub mod text;
pub mod values;

/// The closest candidate to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
