//! `container`: build and run service containers from declarative specs.
//!
//! Pipeline: `spec` (parse, validate) → `plan` (pure compile with `modules` and
//! `script` hooks, diff, render) → `runtime` (carries out the diff: apply, start,
//! stop, destroy, layer builds; owns the state root) → `exec` (the only code that
//! touches the kernel or runs programs). `vocab` is the leaf vocabulary they all
//! speak, `diag` turns problems into diagnostics, `state` writes files atomically,
//! `cli` is the command line over all of it; `main.rs` and `bin/container-init.rs`
//! are thin binaries. The layers, what each may import, and the exceptions are in
//! docs/ARCHITECTURE.md; `tests/vocabulary.rs` keeps the module graph acyclic.

pub mod cli;
pub mod diag;
pub mod exec;
pub mod modules;
pub mod plan;
pub mod runtime;
pub mod schema;
pub mod script;
pub mod spec;
pub mod state;
pub mod vocab;
